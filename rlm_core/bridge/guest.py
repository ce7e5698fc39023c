"""The guest runtime: runs inside every sandbox and executes model-written cells.

Standard library only, and written for CPython 3.8 through 3.14 and Pyodide: no syntax or
stdlib names newer than 3.8 (a ruff target pinned to py38 guards this file). It holds two
layers:

* :class:`Session` executes cells and knows nothing about transport; the in-process mock
  backend drives it on a host thread.
* :class:`Driver` serves a Session over the framed protocol (``docs/protocol.md``); its
  subclasses differ only in I/O. :class:`StdioDriver` (started by :func:`main`) owns a CPython
  process's stdin/stdout: the host bootstraps it with ``python3 -c LOADER`` and sends this file
  as the first frame, so any image with Python 3.8+ works without uploading files.
  :class:`PyodideDriver` is called by the Deno worker, which owns the stdio there.

The host imports this module too: :func:`truncate_output` is the one definition of the
truncation format, shared by every backend and by the loop.
"""

import ast
import builtins
import codecs
import inspect
import io
import itertools
import json
import linecache
import math
import os
import struct
import sys
import threading
import time
import traceback

PROTOCOL_VERSION = 1
HEADER = struct.Struct(">IQ")  # JSON length, attachment length
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
CELL_PREFIX = "<cell-"
MAX_NESTING = 500  # JSON deeper than this overflows a recursive decoder (the host's, Pyodide's)
ERROR_TEXT_CHARS = 100000  # an error's message and traceback are cut to this many characters


# --------------------------------------------------------------------------- output capture


def truncation_marker(omitted):
    """The text that replaces the middle of an over-long output."""
    return "\n... [{:,} characters omitted] ...\n".format(omitted)


def truncate_output(text, limit):
    """Keep the first ``limit // 2`` and last ``limit - limit // 2`` characters of ``text``.

    The marker between them names how many characters were dropped; text within the limit is
    returned unchanged.
    """
    if limit is None or len(text) <= limit:
        return text
    head = limit // 2
    tail = limit - head
    return text[:head] + truncation_marker(len(text) - limit) + (text[-tail:] if tail else "")


class CappedText(io.TextIOBase):
    """A text sink that keeps only the head and tail it may need and counts every character.

    Memory stays O(limit) however much is written, so a 1 GB print never piles up anywhere.
    """

    def __init__(self, limit):
        self._limit = max(0, int(limit)) if limit is not None else None
        self._head = []
        self._head_len = 0
        self._tail = ""
        self.total = 0
        self._lock = threading.Lock()

    @property
    def encoding(self):
        return "utf-8"

    @property
    def errors(self):
        return "strict"

    def writable(self):
        return True

    def isatty(self):
        return False

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not " + type(s).__name__)
        with self._lock:
            self.total += len(s)
            if self._limit is None:
                self._head.append(s)
                return len(s)
            room = self._limit - self._head_len
            if room > 0:
                piece = s[:room]
                self._head.append(piece)
                self._head_len += len(piece)
            if len(s) >= self._limit:
                self._tail = s[len(s) - self._limit :]
            else:
                self._tail = (self._tail + s)[-self._limit :]
        return len(s)

    def flush(self):
        pass

    @property
    def buffer(self):
        """The binary layer, as ``sys.stdout.buffer`` has: bytes are decoded into this text."""
        sink = self.__dict__.get("_buffer")
        if sink is None:
            sink = self.__dict__["_buffer"] = _BytesSink(self)
        return sink

    def result(self):
        """Return ``(text, true_length, truncated)`` with the marker already applied."""
        with self._lock:
            head = "".join(self._head)
            if self._limit is None or self.total <= self._limit:
                return head, self.total, False
            keep_head = self._limit // 2
            keep_tail = self._limit - keep_head
            text = head[:keep_head] + truncation_marker(self.total - self._limit)
            if keep_tail:
                text += self._tail[-keep_tail:]
            return text, self.total, True


class _BytesSink(io.RawIOBase):
    """``CappedText.buffer``: bytes written here reach the text capture as UTF-8."""

    def __init__(self, text):
        io.RawIOBase.__init__(self)
        self._text = text
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def writable(self):
        return True

    def write(self, data):
        if isinstance(data, str):
            raise TypeError("a bytes-like object is required, not 'str'")
        data = bytes(data)
        self._text.write(self._decoder.decode(data))
        return len(data)


class _ThreadStreams(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` stand-in that writes to the current thread's capture.

    Used when cells run on a thread of a process that has other work (the in-process backend):
    only output from the executing thread is captured; other threads reach the original stream.
    """

    def __init__(self, original, local, attr):
        self._original = original
        self._local = local
        self._attr = attr

    def _target(self):
        return getattr(self._local, self._attr, None) or self._original

    def write(self, s):
        return self._target().write(s)

    def flush(self):
        target = self._target()
        if target is not None:
            target.flush()

    def isatty(self):
        return False

    def writable(self):
        return True

    def __getattr__(self, name):
        return getattr(self._target(), name)


# --------------------------------------------------------------------------- session


class _Submitted(BaseException):
    """Ends a cell at SUBMIT; a BaseException so ``except Exception`` cannot swallow it."""


class CellTimeout(BaseException):
    """Raised in the executing thread when the host interrupts a cell that ran past its timeout."""


class _HostDefault(object):
    """Placeholder default for a tool parameter whose real default stays on the host."""

    def __repr__(self):
        return "..."


_HOST_DEFAULT = _HostDefault()


_EMPTY = inspect.Parameter.empty
_POSITIONAL_ONLY = inspect.Parameter.POSITIONAL_ONLY
_POSITIONAL_OR_KEYWORD = inspect.Parameter.POSITIONAL_OR_KEYWORD
_VAR_POSITIONAL = inspect.Parameter.VAR_POSITIONAL
_KEYWORD_ONLY = inspect.Parameter.KEYWORD_ONLY
_VAR_KEYWORD = inspect.Parameter.VAR_KEYWORD
_KINDS = {
    "positional_only": _POSITIONAL_ONLY,
    "positional_or_keyword": _POSITIONAL_OR_KEYWORD,
    "var_positional": _VAR_POSITIONAL,
    "keyword_only": _KEYWORD_ONLY,
    "var_keyword": _VAR_KEYWORD,
}


def _all_scalars(values):
    """Whether every value is a str, int, bool, None or finite float: JSON with no check."""
    for value in values:
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):
                return False
        elif not (kind is str or kind is int or kind is bool or value is None):
            return False
    return True


def _safe_str(value):
    try:
        return str(value)
    except BaseException:  # a user __str__ may raise anything
        try:
            return object.__repr__(value)
        except BaseException:
            return "<unprintable>"


def _json_check(value, what, max_chars=None):
    """Raise TypeError unless ``value`` has a JSON form; ValueError if it is over ``max_chars``."""
    try:
        chars = _check_tree(value)
    except TypeError as exc:
        raise TypeError(
            "{} is not JSON ({}); use str, int, float, bool, None, list or dict.".format(
                what, _safe_str(exc)
            )
        ) from None
    if max_chars is not None and chars > max_chars:
        raise ValueError(_too_large(what, chars, max_chars))
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(
            "{} is not JSON ({}); use str, int, float, bool, None, list or dict.".format(
                what, _safe_str(exc)
            )
        ) from None


def _too_large(what, size, limit):
    return (
        "{} is too large to return (at least {:,} characters; a result frame holds {:,} "
        "bytes); submit or print less".format(what, size, limit)
    )


def _check_tree(value):
    """Walk ``value`` without recursion; return the characters its strings hold.

    Refuses, before any copy is made, what json.dumps would accept but the other side could
    not read: keys that are not str (json.dumps turns {1: x} into {"1": x} silently) and
    nesting deeper than MAX_NESTING (recursive decoders overflow their stack).
    """
    stack = [(value, 1)]
    chars = 0
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            chars += len(item)
            continue
        if not isinstance(item, (dict, list, tuple)):
            continue
        if depth > MAX_NESTING:
            raise TypeError("nested more than {} levels deep".format(MAX_NESTING))
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise TypeError(
                        "dict key {!r} is a {}, JSON keys are str".format(key, type(key).__name__)
                    )
                chars += len(key)
                stack.append((child, depth + 1))
        else:
            stack.extend((child, depth + 1) for child in item)
    return chars


class Session(object):
    """Executes cells in one persistent namespace.

    ``call_tool(name, args, kwargs)`` is supplied by the driver; it must return the host's reply
    dict: ``{"ok": True, "value": ...}`` or ``{"ok": False, "error": {"type", "message"}}``.
    ``streams`` is ``"global"`` (swap ``sys.stdout`` while a cell runs; the process is ours) or
    ``"thread"`` (capture only the executing thread's writes).
    """

    def __init__(self, call_tool=None, streams="global", max_frame_bytes=DEFAULT_MAX_FRAME_BYTES):
        self._call_tool = call_tool
        self._streams = streams
        self.max_frame_bytes = max_frame_bytes
        self.namespace = {"__name__": "__main__", "__builtins__": builtins}
        self._cell = 0
        self._submitted = None
        self._tool_names = []
        self._error_classes = {}
        self.in_user_code = False
        self.extra_capture = None  # (stdout, stderr) CappedText of the running cell
        self.flush_hook = None  # called before a cell's output is read (fd-level drains)
        # A driver that interrupts with KeyboardInterrupt (Pyodide's interrupt buffer) sets this
        # first, so the interrupt is reported as the cell's timeout rather than a user error.
        self.timeout_requested = False
        self._local = threading.local()
        if streams == "thread":
            self._install_thread_streams()
        self._define_submit(None)

    # ---- registration -------------------------------------------------------------------

    def register(self, tools, outputs):
        """Define one guest function per tool spec, and SUBMIT for ``outputs`` (or the default)."""
        for name in self._tool_names:
            self.namespace.pop(name, None)
        self._tool_names = []
        for spec in tools:
            self.namespace[spec["name"]] = self._make_tool(spec)
            self._tool_names.append(spec["name"])
        self._define_submit(outputs)

    def _make_tool(self, spec):
        name = spec["name"]
        params = []
        for p in spec["params"]:
            default = inspect.Parameter.empty
            if p.get("has_default"):
                default = _HOST_DEFAULT if p.get("host_default") else p.get("default")
            params.append(inspect.Parameter(p["name"], _KINDS[p["kind"]], default=default))
        signature = inspect.Signature(params)
        # Plain positional calls, the common case, skip Signature.bind (costly in a WebAssembly
        # guest) when they fill the leading positional parameters and leave none required.
        leading = 0
        for param in params:
            if param.kind not in (_POSITIONAL_ONLY, _POSITIONAL_OR_KEYWORD):
                break
            leading += 1
        fewest = sum(1 for param in params[:leading] if param.default is _EMPTY)
        if any(p.kind == _KEYWORD_ONLY and p.default is _EMPTY for p in params):
            fewest = leading + 1  # a required keyword-only parameter: never the fast path
        session = self

        def tool(*args, **kwargs):
            if not kwargs and fewest <= len(args) <= leading:
                call_args, call_kwargs = list(args), {}
            else:
                signature.bind(*args, **kwargs)  # TypeError like the host function's
                # Sent as the caller wrote them: a wrapper taking **kwargs needs its keywords.
                call_args, call_kwargs = list(args), dict(kwargs)
            if not (_all_scalars(call_args) and _all_scalars(call_kwargs.values())):
                _json_check([call_args, call_kwargs], "an argument of {}()".format(name))
            return session._dispatch(name, call_args, call_kwargs)

        tool.__name__ = name
        tool.__qualname__ = name
        tool.__doc__ = spec.get("doc") or None
        tool.__signature__ = signature
        return tool

    def _dispatch(self, name, args, kwargs):
        if self._call_tool is None:
            raise RuntimeError("host tools are not available in this session")
        reply = self._call_tool(name, args, kwargs)
        if reply.get("ok"):
            return reply.get("value")
        error = reply.get("error") or {}
        raise self._error_class(str(error.get("type") or "RuntimeError"))(
            str(error.get("message", ""))
        )

    def _error_class(self, type_name):
        """The class a host exception becomes: the builtin of that name, else a look-alike."""
        builtin = getattr(builtins, type_name, None)
        if isinstance(builtin, type) and issubclass(builtin, Exception):
            return builtin
        cls = self._error_classes.get(type_name)
        if cls is None:
            safe = type_name if type_name.isidentifier() else "HostToolError"
            cls = type(safe, (RuntimeError,), {"__module__": "host"})
            self._error_classes[type_name] = cls
        return cls

    def _define_submit(self, outputs):
        session = self
        if outputs is None:
            names = ["output"]
        else:
            names = [o["name"] for o in outputs]
        params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
        signature = inspect.Signature(params)

        def SUBMIT(*args, **kwargs):  # the name the model is told to call
            bound = signature.bind(*args, **kwargs)
            values = dict(bound.arguments)
            limit = session.max_frame_bytes
            for key, value in values.items():
                _json_check(value, "SUBMIT value {!r}".format(key), limit)
            text = json.dumps(values)
            if len(text) > limit:
                raise ValueError(_too_large("the SUBMIT value", len(text), limit))
            values = json.loads(text)  # tuples become lists, as the host sees them
            session._submitted = values
            raise _Submitted()

        SUBMIT.__signature__ = signature
        SUBMIT.__doc__ = "Submit the final outputs and end the cell: SUBMIT({}).".format(
            ", ".join(names)
        )
        self.namespace["SUBMIT"] = SUBMIT

    # ---- variables ----------------------------------------------------------------------

    def set_variables(self, specs, blob):
        """Bind globals from ``specs`` (``name``, ``kind``, ``size``) sliced out of ``blob``."""
        view = memoryview(blob)
        offset = 0
        values = {}
        for spec in specs:
            size = int(spec["size"])
            chunk = view[offset : offset + size]
            offset += size
            kind = spec["kind"]
            if kind == "str":
                values[spec["name"]] = str(chunk, "utf-8")
            elif kind == "bytes":
                values[spec["name"]] = bytes(chunk)
            elif kind == "json":
                values[spec["name"]] = json.loads(str(chunk, "utf-8"))
            else:
                raise ValueError("unknown variable kind " + repr(kind))
        if offset != len(view):
            raise ValueError("variable sizes do not add up to the attachment length")
        self.namespace.update(values)

    # ---- execution ----------------------------------------------------------------------

    def execute(self, code, max_output_chars):
        """Run one cell; return the result message body (see docs/protocol.md)."""
        self._cell += 1
        filename = "{}{}>".format(CELL_PREFIX, self._cell)
        stdout = CappedText(max_output_chars)
        stderr = CappedText(max_output_chars)
        self._submitted = None
        self.timeout_requested = False
        error = None
        value_repr = None
        timed_out = False
        saved = self._redirect(stdout, stderr)
        try:
            try:
                body, last = self._compile(code, filename)
                self.in_user_code = True
                try:
                    result = self._run(body)
                    if last is not None:
                        result = self._run(last)
                        if result is not None:
                            value_repr = _safe_repr(result)
                finally:
                    self.in_user_code = False
            except _Submitted:
                pass
            except (CellTimeout, KeyboardInterrupt) as exc:
                if isinstance(exc, KeyboardInterrupt) and not self.timeout_requested:
                    error = _code_error(exc)
                else:
                    timed_out = True
                    error = _timeout_error()
            except SyntaxError as exc:
                error = _syntax_error(exc)
            except BaseException as exc:  # the cell's exception is data, whatever it is
                error = _code_error(exc)
        finally:
            if self.flush_hook is not None:
                self.flush_hook()
            self._restore(saved)
        if self._submitted is not None:
            error = None
        out_text, out_chars, out_cut = stdout.result()
        err_text, err_chars, err_cut = stderr.result()
        value_cut = False
        if value_repr is not None and len(value_repr) > max_output_chars:
            value_repr = truncate_output(value_repr, max_output_chars)
            value_cut = True
        return {
            "stdout": out_text,
            "stderr": err_text,
            "stdout_chars": out_chars,
            "stderr_chars": err_chars,
            "value": value_repr,
            "error": error,
            "submitted": self._submitted,
            "truncated": out_cut or err_cut or value_cut,
            "timed_out": timed_out,
        }

    def _compile(self, code, filename):
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        flags = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
        tree = ast.parse(code, filename, "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            expr = ast.Expression(tree.body.pop().value)
            last = compile(expr, filename, "eval", flags=flags)
        body = compile(tree, filename, "exec", flags=flags)
        return body, last

    def _run(self, code_obj):
        result = eval(code_obj, self.namespace)  # running the cell is the job
        if code_obj.co_flags & inspect.CO_COROUTINE:
            result = _run_coroutine(result)
        return result

    def _redirect(self, stdout, stderr):
        self.extra_capture = (stdout, stderr)
        if self._streams == "thread":
            # Re-check every cell: the host may have replaced sys.stdout since the session was
            # made (pytest does between fixture setup and the test; so does redirect_stdout).
            self._install_thread_streams()
            self._local.stdout = stdout
            self._local.stderr = stderr
            return None
        saved = (sys.stdout, sys.stderr)
        sys.stdout = stdout
        sys.stderr = stderr
        return saved

    def _restore(self, saved):
        if saved is None:
            self._local.stdout = None
            self._local.stderr = None
        else:
            sys.stdout, sys.stderr = saved
        self.extra_capture = None

    def _install_thread_streams(self):
        if not isinstance(sys.stdout, _ThreadStreams):
            sys.stdout = _ThreadStreams(sys.stdout, _SHARED_LOCAL, "stdout")
            sys.stderr = _ThreadStreams(sys.stderr, _SHARED_LOCAL, "stderr")
        self._local = _SHARED_LOCAL


_SHARED_LOCAL = threading.local()


def _safe_repr(value):
    try:
        return repr(value)
    except BaseException as exc:
        return "<repr failed: {}: {}>".format(type(exc).__name__, _safe_str(exc))


def _run_coroutine(coro):
    try:  # Pyodide with JSPI can block on a coroutine
        from pyodide.ffi import can_run_sync, run_sync  # type: ignore

        if can_run_sync():
            return run_sync(coro)
    except ImportError:
        pass
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def _timeout_error():
    return {
        "type": "TimeoutError",
        "message": "the cell ran past its timeout and was interrupted",
        "traceback": "",
        "lineno": None,
    }


def _syntax_error(exc):
    lines = traceback.format_exception_only(type(exc), exc)
    return {
        "type": type(exc).__name__,
        "message": _safe_str(exc.msg),
        "traceback": "".join(lines),
        "lineno": exc.lineno,
    }


def _code_error(exc):
    tb = exc.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith(CELL_PREFIX):
        tb = tb.tb_next  # drop the runtime's own frames above the cell
    lineno = None
    walk = tb
    while walk is not None:
        if walk.tb_frame.f_code.co_filename.startswith(CELL_PREFIX):
            lineno = walk.tb_lineno
        walk = walk.tb_next
    message = _safe_str(exc)
    try:
        if len(message) > ERROR_TEXT_CHARS:  # a huge message is not formatted (copied) again
            message = truncate_output(message, ERROR_TEXT_CHARS)
            text = "Traceback (most recent call last):\n{}{}: {}\n".format(
                "".join(traceback.format_tb(tb)), type(exc).__name__, message
            )
        else:
            text = "".join(traceback.format_exception(type(exc), exc, tb))
    except BaseException:
        text = "{}: {}\n".format(type(exc).__name__, message)
    return {
        "type": type(exc).__name__,
        "message": message,
        "traceback": truncate_output(text, ERROR_TEXT_CHARS),
        "lineno": lineno,
    }


def oversized_result(result, exc):
    """The result frame sent instead of ``result`` when that is over the frame limit."""
    return {
        "t": "result",
        "id": result.get("id"),
        "stdout": "",
        "stderr": "",
        "stdout_chars": 0,
        "stderr_chars": 0,
        "value": None,
        "submitted": None,
        "truncated": True,
        "timed_out": result.get("timed_out", False),
        "error": {
            "type": "ValueError",
            "message": "the cell's result is too large to return ({}); submit or print less".format(
                _safe_str(exc)
            ),
            "traceback": "",
            "lineno": None,
        },
    }


# --------------------------------------------------------------------------- framing


class ProtocolError(Exception):
    """The host sent something this guest cannot follow; the guest exits."""


def _read_exact(fd, n):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        chunk = os.readv(fd, [view[got:]]) if hasattr(os, "readv") else _read_into(fd, view[got:])
        if chunk == 0:
            raise EOFError("host closed the channel")
        got += chunk
    return buf


def _read_into(fd, view):
    data = os.read(fd, len(view))
    view[: len(data)] = data
    return len(data)


def read_frame(fd):
    """Read one frame: ``(message dict, attachment bytes)``."""
    json_len, blob_len = HEADER.unpack(bytes(_read_exact(fd, HEADER.size)))
    message = json.loads(bytes(_read_exact(fd, json_len)).decode("utf-8"))
    blob = _read_exact(fd, blob_len) if blob_len else b""
    if not isinstance(message, dict):
        raise ProtocolError("frame is not a JSON object")
    return message, blob


# json.dumps with options builds a new encoder per call; frames are encoded often.
encode_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def encode_frame(message, blob=b""):
    """Encode one frame (used by the host too, so both sides share the format)."""
    body = encode_json(message).encode("utf-8")
    return HEADER.pack(len(body), len(blob)) + body + bytes(blob)


# --------------------------------------------------------------------------- drivers


class Driver(object):
    """Serves one Session over the protocol: frame dispatch, answers, results, tool calls.

    What differs between guests is only I/O, which a subclass supplies: :meth:`exchange` (send a
    tool call, wait for its reply), :meth:`take_timeout` and :meth:`timed_out` (the host's
    timeout for the running cell), and optionally :meth:`set_variables` and :meth:`explain`.
    :meth:`handle` answers one host frame with the JSON text of the answer frame.
    """

    def __init__(self, session):
        self.session = session
        self._call_ids = itertools.count(1)  # next() on a count is atomic: threads share it
        self.current_exec = None  # id of the running cell; tool calls are refused outside one
        self.pid = os.getpid()  # a forked child's driver sends nothing (see _execute)

    # ---- what a driver's I/O provides ---------------------------------------------------

    def exchange(self, call_id, text):
        """Send a tool call's JSON text; return the reply dict, or None if the cell timed out."""
        raise NotImplementedError

    def take_timeout(self):
        """True once if the host timed the running cell out and it was not yet raised in it."""
        raise NotImplementedError

    def timed_out(self):
        """Whether the host timed the running cell out."""
        raise NotImplementedError

    def set_variables(self, specs, blob):
        self.session.set_variables(specs, blob)

    def explain(self, error):
        """Add what this guest knows to a cell's error dict (in place)."""

    def begin_cell(self, exec_id):
        self.current_exec = exec_id

    def end_cell(self):
        self.current_exec = None

    # ---- shared --------------------------------------------------------------------------

    def encode(self, message):
        """The JSON text of ``message``; ValueError if its frame would be over the limit."""
        text = encode_json(message)
        limit = self.session.max_frame_bytes
        # UTF-8 takes at most 4 bytes a character: count bytes only when that could matter.
        if len(text) * 4 > limit:
            size = len(text.encode("utf-8"))
            if size > limit:
                raise ValueError(
                    "message of {:,} bytes exceeds the {:,}-byte frame limit".format(size, limit)
                )
        return text

    def call_tool(self, name, args, kwargs):
        call_id = next(self._call_ids)
        text = self.encode(
            {"t": "call", "id": call_id, "name": name, "args": args, "kwargs": kwargs}
        )
        reply = self.exchange(call_id, text)
        if reply is None:
            raise CellTimeout()  # the host timed the cell out while this call waited
        return reply

    def on_sigint(self, signum, frame):
        """SIGINT handler: the host's timeout becomes CellTimeout inside the cell, once."""
        if self.session.in_user_code:
            if self.take_timeout():
                raise CellTimeout()
            raise KeyboardInterrupt()

    def handle(self, message, blob):
        """Answer one host frame; return the JSON text of the answer frame."""
        kind = message.get("t")
        message_id = message.get("id")
        if kind == "configure":
            self.session.max_frame_bytes = int(message["max_frame_bytes"])
            return self.encode({"t": "done", "id": message_id})
        if kind == "register":
            return self._answer(
                message_id, self.session.register, message["tools"], message["outputs"]
            )
        if kind == "vars":
            return self._answer(message_id, self.set_variables, message["vars"], blob)
        if kind == "exec":
            return self._execute(message)
        raise ProtocolError("unknown message type " + repr(kind))

    def _answer(self, message_id, fn, *args):
        try:
            fn(*args)
            return self.encode({"t": "done", "id": message_id})
        except Exception as exc:
            error = {"type": type(exc).__name__, "message": _safe_str(exc)}
            return self.encode({"t": "done", "id": message_id, "error": error})

    def _execute(self, message):
        started = time.perf_counter()
        self.begin_cell(message.get("id"))
        try:
            result = self.session.execute(message["code"], int(message["max_output_chars"]))
            timed_out = self.timed_out()
        finally:
            if os.getpid() != self.pid:
                _exit_forked_child()
            self.end_cell()
        error = result.get("error")
        if timed_out and error and error.get("type") in ("KeyboardInterrupt", "CancelledError"):
            # A cell awaiting when its tasks were cancelled, or interrupted by a SIGINT that
            # raced the timeout's, timed out all the same.
            result["timed_out"] = True
            result["error"] = error = _timeout_error()
        if error:
            self.explain(error)
        result["t"] = "result"
        result["id"] = message.get("id")
        result["guest_duration_s"] = time.perf_counter() - started
        try:
            return self.encode(result)
        except ValueError as exc:
            return self.encode(oversized_result(result, exc))


def _exit_forked_child():
    # A child forked inside a cell shares the protocol's pipes: it must never write a frame.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(0)


class _FdDrain(object):
    """Reads a pipe that replaced fd 1 or 2 and feeds it into the running cell's capture."""

    def __init__(self, read_fd, pick):
        self._fd = read_fd
        self._pick = pick  # returns the CappedText to feed, or None between cells
        self._marker = None
        self._seen = threading.Event()
        self._pending = b""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        thread = threading.Thread(target=self._loop, name="rlm-fd-drain", daemon=True)
        thread.start()

    def _loop(self):
        while True:
            try:
                data = os.read(self._fd, 65536)
            except OSError:
                return
            if not data:
                return
            data = self._pending + data
            self._pending = b""
            marker = self._marker
            if marker is not None:
                at = data.find(marker)
                if at >= 0:
                    self._feed(data[:at])
                    data = data[at + len(marker) :]
                    self._marker = None
                    self._seen.set()
                else:  # keep a possible partial marker for the next read
                    keep = len(marker) - 1
                    if keep:
                        data, self._pending = data[:-keep], data[-keep:]
            self._feed(data)

    def _feed(self, data):
        if not data:
            return
        target = self._pick()
        if target is not None:
            target.write(self._decoder.decode(data))

    def sync(self, write_fd, timeout=0.5):
        """Wait until everything written to ``write_fd`` so far has been fed."""
        marker = b"\x00rlm-sync-" + os.urandom(8).hex().encode() + b"\x00"
        self._seen.clear()
        self._marker = marker
        try:
            os.write(write_fd, marker)
        except OSError:
            self._marker = None
            return
        self._seen.wait(timeout)


_WAITING = object()  # a tool call's slot before its reply arrives
_ABANDONED = object()  # ... when its cell ended first


class StdioDriver(Driver):
    """A CPython guest: frames on private copies of fds 0 and 1, read by a reader thread.

    Guest threads may call tools concurrently: each call waits for the reply with its own id,
    which the reader thread files under that id.
    """

    def __init__(self):
        self.in_fd = os.dup(0)
        self.out_fd = os.dup(1)
        self.diag_fd = os.dup(2)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        sys.stdin = io.TextIOWrapper(io.BytesIO(b""), encoding="utf-8")
        Driver.__init__(self, Session(call_tool=self.call_tool))
        self.session.flush_hook = self._sync_drains
        self._drains = []
        for fd, pick in ((1, 0), (2, 1)):
            r, w = os.pipe()
            os.dup2(w, fd)
            os.close(w)
            self._drains.append((fd, _FdDrain(r, self._picker(pick))))
        sys.stdout = io.TextIOWrapper(
            os.fdopen(1, "wb", closefd=False), "utf-8", line_buffering=True
        )
        sys.stderr = io.TextIOWrapper(
            os.fdopen(2, "wb", closefd=False), "utf-8", line_buffering=True
        )
        self._state = threading.Condition()  # guards the three below
        self._inbox = []  # host frames other than replies and interrupts
        self._replies = {}  # call id -> _WAITING, the reply, or _ABANDONED
        self._eof = False
        self._send_lock = threading.Lock()  # also orders tool calls against the cell's end
        self._main_ident = threading.get_ident()
        self._timed_out_exec = None
        self._timeout_taken = False

    def _sync_drains(self):
        if os.getpid() != self.pid:
            return  # a forked child has no drain threads; its marker would leak
        for fd, drain in self._drains:
            drain.sync(fd)

    def _picker(self, index):
        def pick():
            capture = self.session.extra_capture
            return capture[index] if capture else None

        return pick

    # ---- framing ------------------------------------------------------------------------

    def send_text(self, text):
        body = text.encode("utf-8")
        self._write(HEADER.pack(len(body), 0) + body)

    def _write(self, data):
        if os.getpid() != self.pid:
            raise RuntimeError("a forked child process cannot talk to the host")
        with self._send_lock:
            self._write_locked(data)

    def _reader(self):
        try:
            while True:
                message, blob = read_frame(self.in_fd)
                kind = message.get("t")
                if kind == "interrupt":
                    self._interrupt(message.get("id"))
                    continue
                with self._state:
                    if kind == "reply":
                        call_id = message.get("id")
                        if self._replies.get(call_id) is _WAITING:
                            self._replies[call_id] = message
                            self._state.notify_all()
                        continue  # otherwise a late reply to a call its cell abandoned
                    self._inbox.append((message, blob))
                    self._state.notify_all()
        except BaseException:
            with self._state:
                self._eof = True
                self._state.notify_all()

    def _next_message(self):
        with self._state:
            while not self._inbox:
                if self._eof:
                    return {"t": "eof"}, b""
                self._state.wait()
            return self._inbox.pop(0)

    # ---- cells, tool calls and timeouts -------------------------------------------------

    def begin_cell(self, exec_id):
        with self._send_lock:
            self._timed_out_exec = None
            self._timeout_taken = False
            self.current_exec = exec_id

    def end_cell(self):
        # Under the send lock: no thread the cell left behind can send a call after this.
        with self._send_lock:
            self.current_exec = None
            with self._state:
                for call_id, reply in self._replies.items():
                    if reply is _WAITING:
                        self._replies[call_id] = _ABANDONED
                self._state.notify_all()

    def exchange(self, call_id, text):
        body = text.encode("utf-8")
        data = HEADER.pack(len(body), 0) + body
        if os.getpid() != self.pid:
            raise RuntimeError("host tools cannot be called from a forked child process")
        with self._send_lock:
            if self.current_exec is None:
                raise RuntimeError(
                    "host tools can be called only while a cell runs; this thread outlived "
                    "the cell that started it"
                )
            with self._state:
                self._replies[call_id] = _WAITING
            try:
                self._write_locked(data)
            except BaseException:
                with self._state:
                    self._replies.pop(call_id, None)
                raise
        with self._state:
            try:
                while self._replies[call_id] is _WAITING:
                    if self._eof:
                        os._exit(0)
                    self._state.wait()
                reply = self._replies[call_id]
            finally:
                self._replies.pop(call_id, None)
        if reply is _ABANDONED:
            raise RuntimeError("the cell ended before the host answered this tool call")
        return reply

    def _write_locked(self, data):
        view = memoryview(data)
        while view:
            written = os.write(self.out_fd, view)
            view = view[written:]

    def _interrupt(self, exec_id):
        if exec_id is None or exec_id != self.current_exec:
            return
        self._timed_out_exec = exec_id
        import signal

        if hasattr(signal, "pthread_kill"):
            signal.pthread_kill(self._main_ident, signal.SIGINT)
        else:
            import _thread

            _thread.interrupt_main()

    def take_timeout(self):
        if self.timed_out() and not self._timeout_taken:
            self._timeout_taken = True
            return True
        return False

    def timed_out(self):
        return self._timed_out_exec is not None and self._timed_out_exec == self.current_exec

    # ---- main loop ----------------------------------------------------------------------

    def serve(self):
        import platform
        import signal

        signal.signal(signal.SIGINT, self.on_sigint)
        threading.Thread(target=self._reader, name="rlm-reader", daemon=True).start()
        ready = {
            "t": "ready",
            "protocol": PROTOCOL_VERSION,
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "pid": os.getpid(),
        }
        self.send_text(self.encode(ready))
        while True:
            message, blob = self._next_message()
            if message.get("t") in ("eof", "shutdown"):
                return
            self.send_text(self.handle(message, blob))


_PREPARED = []  # a PyodideDriver built while the runner waited in its pool


class PyodideDriver(Driver):
    """A Pyodide guest: the Deno worker (``worker.mjs``) owns stdio and calls :meth:`handle_text`.

    ``js`` is the worker's API: ``callTool(id, text)`` sends a call and blocks until the reply's
    text (None when the host's timeout came first), ``timeoutRequested()``,
    ``takeInterrupt()``, ``takeFdOutput(index)``, ``importHint(module)`` and
    ``sleepInterruptibly(seconds)``. Pyodide has no threads, so calls never overlap.
    """

    def __init__(self, js):
        # Built before the worker locks its JavaScript globals down, so this is the time to use
        # what needs them: Pyodide loads its entropy source (node:crypto under Deno) on first
        # use, which fails once Deno is gone. The environment's "_" names the runner's script
        # under the host's cache directory.
        os.urandom(1)
        os.environ.pop("_", None)
        Driver.__init__(self, Session(call_tool=self.call_tool, streams="global"))
        self.js = js
        self._call_js = js.callTool  # each attribute access on a JsProxy makes a new proxy
        self.session.flush_hook = self._flush
        self._take_interrupt = js.takeInterrupt
        self._timeout_requested = js.timeoutRequested

    @classmethod
    def prepare(cls, js):
        """Build the driver the next session takes, and return a throwaway one to warm up.

        Run before the host's boot frame, so that the code paths a session's first frames take
        (compiled lazily, in V8 and in WebAssembly) are compiled while the runner waits.
        """
        warm = cls(js)
        warm.handle({"t": "register", "id": 0, "tools": [], "outputs": None}, None)
        _PREPARED[:] = [cls(js)]
        return warm

    @classmethod
    def take(cls, js):
        """The driver for a new session (the prepared one if there is one)."""
        driver = _PREPARED.pop() if _PREPARED else cls(js)
        driver.install()
        return driver

    def install(self):
        """Route SIGINT (the interrupt buffer) and ``time.sleep`` through this driver."""
        import signal

        signal.signal(signal.SIGINT, self.on_sigint)
        wait = self.js.sleepInterruptibly
        real_sleep = time.sleep

        def sleep(seconds):
            # Pyodide's own sleep ignores the interrupt buffer; this waits on it.
            if seconds < 0:
                raise ValueError("sleep length must be non-negative")
            if wait(float(seconds)):
                raise CellTimeout()

        sleep.__doc__ = real_sleep.__doc__
        time.sleep = sleep

    def handle_text(self, text, blob):
        """:meth:`handle` for the worker: the frame's JSON text in, the answer's text out."""
        return self.handle(json.loads(text), blob)

    def exchange(self, call_id, text):
        reply = self._call_js(call_id, text)
        return None if reply is None else json.loads(reply)

    def take_timeout(self):
        return bool(self._take_interrupt())

    def timed_out(self):
        return bool(self._timeout_requested())

    def set_variables(self, specs, blob):
        # One variable at a time from the JS buffer: only that variable's bytes are copied into
        # the wasm heap, so a 500 MB input needs ~2x its size there, not 2x the whole blob.
        total = 0 if blob is None else blob.length
        if sum(int(spec["size"]) for spec in specs) != total:
            raise ValueError("variable sizes do not add up to the attachment length")
        offset = 0
        for spec in specs:
            size = int(spec["size"])
            data = blob.subarray(offset, offset + size).to_bytes() if size else b""
            offset += size
            self.session.set_variables([spec], data)
            del data

    def explain(self, error):
        if error.get("type") != "ModuleNotFoundError":
            return
        import re

        found = re.match(r"No module named '([^'.]+)", error.get("message", ""))
        package = found and self.js.importHint(found.group(1))
        if package:
            hint = (
                " (Pyodide has a package {!r} for this import, but it is not installed in this "
                "sandbox and the sandbox cannot download packages; only the standard library "
                "and packages given to DenoInterpreter(packages=...) are available)".format(package)
            )
            error["message"] += hint
            error["traceback"] = error.get("traceback", "").rstrip("\n") + hint + "\n"

    def _flush(self):
        # Writes to fds 1 and 2 wait in the worker until the cell's end: move them to capture.
        for stream in (sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except Exception:
                pass
        capture = self.session.extra_capture
        for index in (0, 1):
            head, dropped, tail = self.js.takeFdOutput(index)
            if capture is not None:
                capture[index].write(head)
                capture[index].total += int(dropped)
                capture[index].write(tail)

    @staticmethod
    def cancel_tasks():
        """Cancel the event loop's tasks: a timed-out cell suspended in ``await`` resumes."""
        import asyncio

        for task in asyncio.all_tasks(asyncio.get_event_loop()):
            task.cancel()


def main():
    """Entry point when the host bootstraps this file into a fresh ``python3`` process."""
    driver = StdioDriver()
    try:
        driver.serve()
    except (EOFError, ProtocolError) as exc:
        os.write(driver.diag_fd, "rlm guest: {}\n".format(exc).encode("utf-8", "replace"))
    finally:
        os._exit(0)


if __name__ == "__rlm_guest__":
    main()
