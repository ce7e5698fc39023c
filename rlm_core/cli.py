"""The ``rlm`` command: run an RLM over files, run one cell in a backend, list the backends.

``rlm run FILE... --query TEXT`` turns files, folders and globs into the ``context`` input;
``rlm exec --interpreter NAME CODE`` runs one cell; ``rlm interpreters`` says, for each
backend, whether it can run here and, if not, exactly why; ``rlm batch`` runs one RLM per
row of a file (:mod:`rlm_core.batch.cli`).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import anyio

from rlm_core.batch.cli import add_parser as add_batch_parser
from rlm_core.batch.cli import run as run_batch
from rlm_core.bench.cli import add_parser as add_bench_parser
from rlm_core.bench.cli import main as bench_main
from rlm_core.cli_options import add_interpreter_option, add_model_options
from rlm_core.errors import ConfigError, InterpreterError, RLMError, RunError
from rlm_core.observe.commands import add_commands, run_replay, run_view

if TYPE_CHECKING:  # the modules below load pydantic and litellm: only commands that run need them
    from rlm_core.config import Settings
    from rlm_core.trajectory import Event

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

NO_MODEL_MESSAGE = """\
rlm: no model is configured, so nothing was run.

Set one of these (any litellm model string works):
  rlm run ... --model openai/gpt-4o-mini          (needs OPENAI_API_KEY)
  export RLM_MODEL=anthropic/claude-sonnet-4-5    (needs ANTHROPIC_API_KEY)
  model = "openai/gpt-4o-mini"                    in rlm.toml or [tool.rlm] in pyproject.toml
A local OpenAI-compatible server (vLLM, llama.cpp, Ollama, LM Studio) works too:
  rlm run ... --model openai/<model-name> --api-base http://127.0.0.1:8000/v1
"""


class _VersionAction(argparse.Action):
    """``--version``: looks the version up only when asked, so ``--help`` stays fast."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(_version())  # on stdout, as argparse's own version action does
        parser.exit()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from rlm_core.registry import DISTRIBUTION

    try:
        return f"rlm {version(DISTRIBUTION)}"
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "rlm (version unknown: the rlmbox distribution is not installed)"


def _example(*lines: str) -> str:
    """An argparse epilog showing one example command."""
    return "example:\n" + "\n".join(f"  {line}" for line in lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlm",
        description="Recursive Language Models with pluggable sandboxes.",
        epilog=_example(
            'rlm run notes/ --query "What changed in March?" --model openai/gpt-4o-mini'
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="answer a query about files with an RLM",
        description="Answer a query about files, folders or globs with an RLM. The answer goes "
        "to stdout; progress and diagnostics go to stderr.",
        epilog=_example(
            "rlm run server.log --query 'How many CRITICAL events?' --model openai/gpt-4o-mini",
            "rlm run docs/ --query '...' --model openai/qwen3 --api-base http://127.0.0.1:8000/v1",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("paths", nargs="+", metavar="FILE", help="files, folders or glob patterns")
    run.add_argument("--query", "-q", required=True, help="the question to answer")
    run.add_argument(
        "--signature",
        default="context, query -> answer",
        help="inputs must be context and query (default: 'context, query -> answer')",
    )
    add_model_options(run)
    add_interpreter_option(run)
    run.add_argument("--max-iterations", type=int, help="steps before the extract fallback")
    run.add_argument(
        "--json", action="store_true", help="print the result and trajectory as one JSON document"
    )
    run.add_argument("--log", help="append every event to this JSONL file as it happens")
    run.add_argument("--record", help="write a cassette (model replies, tool results) here")
    run.add_argument("--verbose", "-v", action="store_true", help="print every step in full")
    run.add_argument(
        "--binary",
        action="store_true",
        help="bind one non-text file as raw bytes instead of refusing it",
    )

    ex = sub.add_parser(
        "exec",
        help="run one cell of Python in a backend",
        description="Run one cell of Python in a sandbox backend and print what it printed.",
        epilog=_example('rlm exec --interpreter deno "import sys; print(sys.platform)"'),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ex.add_argument("code", help="the code, or - to read it from stdin")
    add_interpreter_option(ex)
    ex.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")

    sub.add_parser(
        "interpreters",
        help="list the backends and whether each can run here",
        description="List every known or installed backend and whether it can run here; for "
        "one that cannot, say why and how to fix it.",
        epilog=_example("RLM_DOCKER_IMAGE=python:3.12-slim rlm interpreters"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_bench_parser(sub)
    add_batch_parser(sub)
    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (128 + the signal when stopped by one)."""
    args = _parser().parse_args(argv)
    with _stop_signals_like_ctrl_c() as received:
        try:
            if args.command == "run":
                with results_only_on_stdout() as out:
                    return _run(args, out)
            if args.command == "exec":
                with results_only_on_stdout() as out:
                    return anyio.run(_exec, args, out)
            if args.command == "bench":
                return bench_main(args)
            if args.command == "view":
                return run_view(args)
            if args.command == "replay":
                return run_replay(args)
            if args.command == "batch":
                return run_batch(args)
            with results_only_on_stdout() as out:
                return anyio.run(_interpreters, out)
        except ConfigError as exc:
            print(f"rlm: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except RLMError as exc:
            print(f"rlm: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except KeyboardInterrupt:
            signum = received[-1] if received else int(signal.SIGINT)
            print(f"rlm: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
            return 128 + signum


@contextlib.contextmanager
def _stop_signals_like_ctrl_c() -> Iterator[list[int]]:
    """SIGTERM and SIGHUP stop the command the way Ctrl-C does, so sandboxes are closed.

    The handler re-raises the signal as SIGINT: the event loop then cancels the run, every
    session is closed on the way out, and :func:`main` exits with 128 + the signal's number.
    """
    received: list[int] = []

    def stop(signum: int, frame: object) -> None:
        received.append(signum)
        signal.raise_signal(signal.SIGINT)

    previous: dict[int, Any] = {}
    try:
        for stopping in (signal.SIGTERM, signal.SIGHUP):
            previous[stopping] = signal.signal(stopping, stop)
    except ValueError:  # not the main thread: signals cannot be handled here
        pass
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def results_only_on_stdout() -> Iterator[TextIO]:
    """Send everything printed inside to stderr, and yield the real stdout for the result.

    Libraries print to stdout as they please (litellm prints banners and debug lines, more in
    some releases than in others); on stdout they would corrupt ``--json`` and any pipe that
    reads the answer. Writes to ``sys.stdout`` go to stderr instead, whatever prints them.
    """
    real = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        yield real


# ---- rlm run ------------------------------------------------------------------------------


def _options_as_labels(*names: str) -> dict[str, str]:
    """Name command-line settings by their option (``"option --api-base"``) in messages."""
    return {name: f"option --{name.replace('_', '-')}" for name in names}


def _run(args: argparse.Namespace, out: TextIO) -> int:
    from rlm_core.config import load_settings

    given = {
        "model": args.model,
        "sub_model": args.sub_model,
        "api_base": args.api_base,
        "interpreter": args.interpreter,
        "max_iterations": args.max_iterations,
    }
    settings = load_settings(given, labels=_options_as_labels(*given))
    # Checked before reading files, booting a sandbox or importing litellm: fail fast.
    if settings.model is None:
        print(NO_MODEL_MESSAGE, file=sys.stderr, end="")
        return EXIT_USAGE
    settings.check_interpreter()
    context = read_context(args.paths, binary=args.binary)
    from rlm_core.rlm import RLM

    lm, sub_lm = settings.resolve_models()
    rlm = RLM(
        args.signature,
        lm=lm,
        sub_lm=sub_lm,
        interpreter=settings.interpreter,
        api_base=settings.api_base,
        max_iterations=settings.max_iterations,
        log=args.log,
        record=args.record,
        verbose=args.verbose,
        on_event=None if args.verbose else _Progress(),
    )
    if set(rlm.signature.input_names) != {"context", "query"}:
        raise ConfigError("the signature's inputs must be exactly 'context, query'")
    result = rlm(context=context, query=args.query)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2), file=out)
    else:
        outputs = result.to_dict()["outputs"]
        if len(outputs) == 1:
            value = next(iter(outputs.values()))
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            print(text, file=out)
        else:
            for name, value in outputs.items():
                print(f"{name}: {json.dumps(value, ensure_ascii=False)}", file=out)
    usage = result.usage
    note = " (extracted after the step budget ran out)" if result.extracted else ""
    print(
        f"rlm: {len(result.steps)} steps, {usage.calls} model calls, {usage.total_tokens:,} "
        f"tokens, ${usage.cost_usd:.4f}, {usage.wall_time_s:.1f} s{note}",
        file=sys.stderr,
    )
    return EXIT_OK


def read_context(patterns: Sequence[str], *, binary: bool = False) -> str | bytes:
    """Read files, folders (recursively) and glob patterns into one string.

    A single file is its text; several are joined, each under a ``===== path =====`` header.
    Files that are not UTF-8 text are refused, since the model would see mangled bytes; with
    ``binary=True`` one file is read as raw bytes instead.

    Raises:
        ConfigError: Nothing matched, a file cannot be read, or a file is not text.
    """
    files: list[Path] = []
    for pattern in patterns:
        matches = (
            sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        )
        for match in matches:
            path = Path(match)
            if path.is_dir():
                files.extend(p for p in sorted(path.rglob("*")) if p.is_file() and not _hidden(p))
            elif path.is_file():
                files.append(path)
            else:
                raise ConfigError(f"{match!r} is not a file or folder")
    if not files:
        raise ConfigError(f"no files matched {list(patterns)}")
    unique = list(dict.fromkeys(files))
    raw = {path: _read_bytes(path) for path in unique}
    if binary:
        if len(unique) != 1:
            raise ConfigError(
                f"--binary binds one file as raw bytes, but {len(unique)} files matched; "
                "give exactly one file"
            )
        return raw[unique[0]]
    texts: list[tuple[Path, str]] = []
    refused: list[str] = []
    for path, data in raw.items():
        text, problem = _as_text(data)
        if text is None:
            refused.append(f"{path} ({problem})")
        else:
            texts.append((path, text))
    if refused:
        listed = "; ".join(refused[:5]) + (
            f"; and {len(refused) - 5} more" if len(refused) > 5 else ""
        )
        raise ConfigError(
            f"not UTF-8 text, so the model would read mangled bytes: {listed}. Convert it to "
            "text first, leave it out (name the files or a narrower glob), or pass --binary to "
            "bind one file's raw bytes as `context`"
        )
    if len(texts) == 1:
        return texts[0][1]
    return "\n\n".join(f"===== {path} =====\n{text}" for path, text in texts)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def _as_text(data: bytes) -> tuple[str | None, str]:
    """The text of ``data``, or None and why it is not text."""
    nul = data.find(b"\0")
    if nul >= 0:  # valid UTF-8 can hold NUL, but text files do not; binaries and UTF-16 do
        return None, f"a NUL byte at offset {nul}"
    try:
        return data.decode("utf-8-sig"), ""
    except UnicodeDecodeError as exc:
        return None, f"invalid UTF-8 at byte {exc.start}"


def _hidden(path: Path) -> bool:
    return any(part.startswith(".") for part in path.parts)


class _Progress:
    """One line per step on stderr, so long runs show they are alive."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)

    def __call__(self, event: Event) -> None:
        indent = "  " * int(event.get("depth", 0))
        if event["event"] == "step":
            step = event["step"]
            calls = len(step["sub_calls"])
            extra = f", {calls} sub-calls" if calls else ""
            flag = " error" if step["error"] else ""
            self.console.print(
                f"{indent}[dim]step {step['index']}: {step['kind']}{flag}"
                f" ({step['lm_duration_s'] + step['duration_s']:.1f} s{extra})[/dim]",
                highlight=False,
            )
        elif event["event"] == "session_restart":
            self.console.print(f"{indent}[yellow]sandbox replaced: {event['reason']}[/yellow]")


# ---- rlm exec -----------------------------------------------------------------------------


def _make(settings: Settings) -> Any:
    return settings.create_interpreter()


async def _exec(args: argparse.Namespace, out: TextIO) -> int:
    from rlm_core.config import load_settings

    settings = load_settings(
        {"interpreter": args.interpreter}, labels=_options_as_labels("interpreter")
    )
    code = sys.stdin.read() if args.code == "-" else args.code
    interpreter = _make(settings)
    try:
        await interpreter.start()
        result = await interpreter.execute(code, timeout=args.timeout)
    finally:
        await interpreter.aclose()
    if result.stdout:
        out.write(result.stdout)
    if result.value is not None:
        print(result.value, file=out)
    if result.stderr:
        sys.stderr.write(result.stderr)
    if result.error is not None:
        print(str(result.error).rstrip(), file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


# ---- rlm interpreters ---------------------------------------------------------------------


async def _interpreters(out: TextIO) -> int:
    from rlm_core.config import load_settings
    from rlm_core.registry import KNOWN_BACKENDS, available, install_hint

    settings = load_settings()
    installed = set(available())
    names = sorted(installed | set(KNOWN_BACKENDS))
    status: dict[str, str] = {}

    async def probe(name: str) -> None:
        if name not in installed:
            status[name] = f"not installed ({install_hint(name)})"
            return
        try:
            interpreter = settings.create_interpreter(name)
        except (ConfigError, InterpreterError) as exc:
            status[name] = f"unavailable: {exc}"
            return
        caps = interpreter.capabilities
        try:
            with anyio.fail_after(120):
                await interpreter.start()
            status[name] = f"available (isolation: {caps.isolation})"
        except TimeoutError:
            status[name] = "unavailable: did not start within 120 s"
        except (InterpreterError, RunError, OSError) as exc:
            status[name] = f"unavailable: {exc}"
        finally:
            await interpreter.aclose()

    async with anyio.create_task_group() as tg:
        for name in names:
            tg.start_soon(probe, name)
    default = settings.interpreter
    for name in names:
        mark = " (default)" if name == default else ""
        print(f"{name}{mark}: {status[name]}", file=out)
    return EXIT_OK
