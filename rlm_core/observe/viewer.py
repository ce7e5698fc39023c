"""``rlm view``: turn a run's JSONL event log into one self-contained HTML page.

The page inlines its CSS, JavaScript and the events (no CDN, no network; it works opened from
disk). ``--follow`` serves the same page from a loopback HTTP server that hands out new events
as the run appends them, so the page updates in place and keeps what the reader has opened.
"""

from __future__ import annotations

import html
import json
import threading
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

from rlm_core.errors import ConfigError
from rlm_core.trajectory import Event

__all__ = ["FollowServer", "read_events", "render_html", "write_html"]

_ASSETS = resources.files("rlm_core.observe") / "viewer_assets"


def read_events(path: str | Path, *, offset: int = 0) -> tuple[list[Event], int]:
    """Events of a log from byte ``offset`` on, and the offset after the last whole line.

    A last line without its newline is still being written and is left for the next read;
    lines that are not JSON objects are skipped (a log may be appended to by hand).

    Raises:
        ConfigError: The file cannot be read.
    """
    try:
        with Path(path).open("rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the event log {path}: {exc}") from exc
    end = data.rfind(b"\n") + 1
    events: list[Event] = []
    for line in data[:end].splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("event"), str):
            events.append(_slim(event))
    return events, offset + end


def _slim(event: Event) -> Event:
    """Drop what the page has twice: a child run's steps also arrive as its own events."""
    if event.get("event") == "step" and isinstance(event.get("step"), dict):
        for call in event["step"].get("sub_calls") or []:
            if isinstance(call, dict) and call.get("steps"):
                call["steps"] = []
    return event


def _asset(name: str) -> str:
    return (_ASSETS / name).read_text(encoding="utf-8")


def _script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element (no ``</script>`` or ``<!--`` can appear)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render_html(events: list[Event], *, title: str, follow_url: str | None = None) -> str:
    """The whole page for ``events``; with ``follow_url`` it polls there for more."""
    page = _asset("viewer.html")
    config = {"follow": follow_url, "title": title}
    return (
        page.replace("{{TITLE}}", html.escape(title))
        .replace("/*{{CSS}}*/", _asset("viewer.css"))
        .replace("/*{{JS}}*/", _asset("viewer.js"))
        .replace("{{CONFIG}}", _script_json(config))
        .replace("{{EVENTS}}", _script_json(events))
    )


def write_html(log: str | Path, out: str | Path | None = None) -> Path:
    """Render ``log`` to ``out`` (default: next to the log, ``.html``); returns the path."""
    events, _ = read_events(log)
    if not events:
        raise ConfigError(f"{log} holds no events; is it a log written by `rlm run --log`?")
    target = Path(out) if out is not None else Path(log).with_suffix(".html")
    target.write_text(render_html(events, title=Path(log).name), encoding="utf-8")
    return target


class FollowServer:
    """A loopback HTTP server for ``rlm view --follow``: the page, and new events as they come.

    ``GET /`` is the page; ``GET /events?offset=N`` answers ``{"events": [...], "offset": M}``
    with the events written after byte ``N``. Polling keeps the page's state (open steps, the
    search, the scroll position), which a reloading page would lose on every refresh.
    """

    def __init__(self, log: str | Path, *, port: int = 0) -> None:
        self.log = Path(log)
        watcher = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/" or self.path.startswith("/?"):
                    body = render_html([], title=watcher.log.name, follow_url="/events").encode()
                    self._send(body, "text/html; charset=utf-8")
                elif self.path.startswith("/events"):
                    offset = _offset_of(self.path)
                    try:
                        events, new_offset = read_events(watcher.log, offset=offset)
                    except ConfigError:  # the run has not created its log yet
                        events, new_offset = [], offset
                    payload = {"events": events, "offset": new_offset}
                    self._send(json.dumps(payload).encode(), "application/json")
                else:
                    self.send_error(404)

            def _send(self, body: bytes, kind: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per poll would drown the terminal

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where the page is served."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def start(self) -> None:
        """Serve on a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


def _offset_of(path: str) -> int:
    _, _, query = path.partition("?")
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == "offset" and value.isdigit():
            return int(value)
    return 0


def open_in_browser(target: str) -> bool:
    """Open a file path or URL in the user's browser; False when there is none."""
    url = target if target.startswith("http") else Path(target).resolve().as_uri()
    try:
        return webbrowser.open(url)
    except webbrowser.Error:
        return False
