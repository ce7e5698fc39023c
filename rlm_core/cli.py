"""The ``rlm`` command: run an RLM over files, run one cell in a backend, list the backends.

``rlm run FILE... --query TEXT`` turns files, folders and globs into the ``context`` input;
``rlm exec --interpreter NAME CODE`` runs one cell; ``rlm interpreters`` says, for each
backend, whether it can run here and, if not, exactly why.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from rlm_core.config import Settings, load_settings
from rlm_core.errors import ConfigError, InterpreterError, RLMError, RunError
from rlm_core.observe.commands import add_commands, run_replay, run_view
from rlm_core.registry import KNOWN_BACKENDS, available
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlm", description="Recursive Language Models with pluggable sandboxes."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="answer a query about files with an RLM")
    run.add_argument("paths", nargs="+", metavar="FILE", help="files, folders or glob patterns")
    run.add_argument("--query", "-q", required=True, help="the question to answer")
    run.add_argument(
        "--signature",
        default="context, query -> answer",
        help="inputs must be context and query (default: 'context, query -> answer')",
    )
    run.add_argument("--model", "-m", help="litellm model string (default: the model setting)")
    run.add_argument("--sub-model", help="model for llm_query (default: --model)")
    run.add_argument("--api-base", help="base URL of an OpenAI-compatible server")
    run.add_argument("--interpreter", "-i", help="backend name or spec (default: setting)")
    run.add_argument("--max-iterations", type=int, help="steps before the extract fallback")
    run.add_argument("--json", action="store_true", help="print the result and trajectory as JSON")
    run.add_argument("--log", help="append every event to this JSONL file as it happens")
    run.add_argument("--record", help="write a cassette (model replies, tool results) here")
    run.add_argument("--verbose", "-v", action="store_true", help="print every step in full")

    ex = sub.add_parser("exec", help="run one cell of Python in a backend")
    ex.add_argument("code", help="the code, or - to read it from stdin")
    ex.add_argument("--interpreter", "-i", help="backend name or spec (default: setting)")
    ex.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")

    sub.add_parser("interpreters", help="list the backends and whether each can run here")
    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "exec":
            return anyio.run(_exec, args)
        if args.command == "view":
            return run_view(args)
        if args.command == "replay":
            return run_replay(args)
        return anyio.run(_interpreters)
    except ConfigError as exc:
        print(f"rlm: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RLMError as exc:
        print(f"rlm: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("rlm: interrupted", file=sys.stderr)
        return 130


# ---- rlm run ------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(
        {
            "model": args.model,
            "sub_model": args.sub_model,
            "api_base": args.api_base,
            "interpreter": args.interpreter,
            "max_iterations": args.max_iterations,
        }
    )
    # Checked before reading files, booting a sandbox or importing litellm: fail fast.
    if settings.model is None:
        print(NO_MODEL_MESSAGE, file=sys.stderr, end="")
        return EXIT_USAGE
    context = read_context(args.paths)
    from rlm_core.rlm import RLM

    rlm = RLM(
        args.signature,
        lm=settings.model,
        sub_lm=settings.sub_model,
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
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    else:
        outputs = result.to_dict()["outputs"]
        if len(outputs) == 1:
            value = next(iter(outputs.values()))
            print(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        else:
            for name, value in outputs.items():
                print(f"{name}: {json.dumps(value, ensure_ascii=False)}")
    usage = result.usage
    note = " (extracted after the step budget ran out)" if result.extracted else ""
    print(
        f"rlm: {len(result.steps)} steps, {usage.calls} model calls, {usage.total_tokens:,} "
        f"tokens, ${usage.cost_usd:.4f}, {usage.wall_time_s:.1f} s{note}",
        file=sys.stderr,
    )
    return EXIT_OK


def read_context(patterns: Sequence[str]) -> str:
    """Read files, folders (recursively) and glob patterns into one string.

    A single file is its text; several are joined, each under a ``===== path =====`` header.

    Raises:
        ConfigError: Nothing matched, or a file cannot be read.
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
    texts = []
    for path in dict.fromkeys(files):
        try:
            texts.append((path, path.read_text(encoding="utf-8", errors="replace")))
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
    if len(texts) == 1:
        return texts[0][1]
    return "\n\n".join(f"===== {path} =====\n{text}" for path, text in texts)


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


async def _exec(args: argparse.Namespace) -> int:
    settings = load_settings({"interpreter": args.interpreter})
    code = sys.stdin.read() if args.code == "-" else args.code
    interpreter = _make(settings)
    try:
        await interpreter.start()
        result = await interpreter.execute(code, timeout=args.timeout)
    finally:
        await interpreter.aclose()
    if result.stdout:
        sys.stdout.write(result.stdout)
    if result.value is not None:
        print(result.value)
    if result.stderr:
        sys.stderr.write(result.stderr)
    if result.error is not None:
        print(str(result.error).rstrip(), file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


# ---- rlm interpreters ---------------------------------------------------------------------


async def _interpreters() -> int:
    settings = load_settings()
    installed = set(available())
    names = sorted(installed | set(KNOWN_BACKENDS))
    status: dict[str, str] = {}

    async def probe(name: str) -> None:
        if name not in installed:
            status[name] = f"not installed (pip install {KNOWN_BACKENDS[name]})"
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
        print(f"{name}{mark}: {status[name]}")
    return EXIT_OK
