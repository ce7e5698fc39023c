"""The ``rlm view`` and ``rlm replay`` commands (``cli.py`` only registers them).

``rlm view RUN.jsonl`` writes the HTML viewer next to the log and opens it; ``--follow`` serves it
live. ``rlm replay RUN.cassette --interpreter NAME`` runs a recorded program again from its
cassette on any backend and says whether every cell gave the same output.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from typing import Any

from rlm_core.errors import ConfigError, ReplayError

__all__ = ["add_commands", "run_replay", "run_view"]

EXIT_OK, EXIT_FAILED = 0, 1


def add_commands(sub: Any) -> None:
    """Register ``view`` and ``replay`` on the CLI's subparsers."""
    view = sub.add_parser("view", help="open a run's event log (--log) in the browser")
    view.add_argument("log", metavar="RUN.jsonl", help="an event log from rlm run --log")
    view.add_argument("--out", "-o", help="where to write the HTML (default: next to the log)")
    view.add_argument("--no-open", action="store_true", help="print the path, do not open it")
    view.add_argument(
        "--follow", "-f", action="store_true", help="serve live while the run writes the log"
    )
    view.add_argument("--port", type=int, default=0, help="port for --follow (default: any)")

    replay = sub.add_parser("replay", help="run a recorded run again from its cassette")
    replay.add_argument("cassette", metavar="RUN.cassette", help="from rlm run --record")
    replay.add_argument("--interpreter", "-i", help="backend to replay on (default: setting)")


def run_view(args: argparse.Namespace) -> int:
    """``rlm view``."""
    from rlm_core.observe.viewer import FollowServer, open_in_browser, write_html

    if args.follow:
        server = FollowServer(args.log, port=args.port)
        server.start()
        print(f"rlm: following {args.log} at {server.url} (Ctrl-C to stop)", file=sys.stderr)
        if not args.no_open:
            open_in_browser(server.url)
        try:
            while True:
                time.sleep(3600)
        finally:
            server.stop()
    started = time.perf_counter()
    path = write_html(args.log, args.out)
    seconds = time.perf_counter() - started
    print(path)
    if not args.no_open and not open_in_browser(str(path)):
        print(f"rlm: no browser found; open {path} yourself ({seconds:.2f} s)", file=sys.stderr)
    return EXIT_OK


def run_replay(args: argparse.Namespace) -> int:
    """``rlm replay``: exit 0 when every cell matches the recording, 1 at the first difference."""
    from rlm_core.config import load_settings
    from rlm_core.observe.cassette import Cassette, stub_tool
    from rlm_core.rlm import RLM
    from rlm_core.signature import ensure_signature

    cassette = Cassette.load(args.cassette)
    program = cassette.program
    if not program.get("signature"):
        raise ConfigError(f"{args.cassette} does not say which program it recorded")
    interpreter = load_settings({"interpreter": args.interpreter}).interpreter
    try:
        signature = ensure_signature(program["signature"])
    except ConfigError:  # types defined in the recording program: check the values untyped
        signature = ensure_signature(_untyped(program["signature"]))
    tools = {spec["name"]: stub_tool(spec) for spec in program.get("tools") or []}
    settings = dict(program.get("settings") or {})
    rlm = RLM(
        signature,
        interpreter=interpreter,
        tools=tools,
        instructions=program.get("instructions") or None,
        replay=cassette,
        **{k: v for k, v in settings.items() if v is not None},
    )
    try:
        result = rlm(**cassette.inputs())
    except ReplayError as exc:
        print(f"rlm: {exc}", file=sys.stderr)
        return EXIT_FAILED
    runs = {key.split("#")[0] for key in cassette.steps}
    print(
        f"rlm: replay on {interpreter} matches the recording from {cassette.backend}: "
        f"{len(cassette.steps)} steps in {len(runs)} run(s), {len(cassette.models)} model "
        f"answers and {len(cassette.tools)} tool results served from the cassette",
        file=sys.stderr,
    )
    print(json.dumps(result.to_dict()["outputs"], ensure_ascii=False))
    return EXIT_OK


def _untyped(signature: str) -> str:
    """``"a: Foo, b: dict[str, Bar] -> c: Baz"`` as ``"a, b -> c"``."""
    flat = signature
    while re.search(r"\[[^\[\]]*\]", flat):
        flat = re.sub(r"\[[^\[\]]*\]", "", flat)
    left, _, right = flat.partition("->")
    return " -> ".join(
        ", ".join(part.split(":")[0].strip() for part in side.split(",")) for side in (left, right)
    )
