# Types of the guest runtime for host-side callers; guest.py itself stays annotation-free so it
# runs on CPython 3.8 and Pyodide unchanged.
import io
import struct
from collections.abc import Callable
from typing import Any

PROTOCOL_VERSION: int
HEADER: struct.Struct
DEFAULT_MAX_FRAME_BYTES: int
CELL_PREFIX: str
MAX_NESTING: int
ERROR_TEXT_CHARS: int

def truncation_marker(omitted: int) -> str: ...
def truncate_output(text: str, limit: int | None) -> str: ...
def encode_frame(message: dict[str, Any], blob: bytes = ...) -> bytes: ...
def read_frame(fd: int) -> tuple[dict[str, Any], bytes]: ...

class CappedText(io.TextIOBase):
    total: int
    def __init__(self, limit: int | None) -> None: ...
    def result(self) -> tuple[str, int, bool]: ...

class CellTimeout(BaseException): ...

class Session:
    namespace: dict[str, Any]
    timeout_requested: bool
    in_user_code: bool
    max_frame_bytes: int
    flush_hook: Callable[[], None] | None
    _call_tool: Callable[[str, list[Any], dict[str, Any]], dict[str, Any]] | None
    def __init__(
        self,
        call_tool: Callable[[str, list[Any], dict[str, Any]], dict[str, Any]] | None = ...,
        streams: str = ...,
        max_frame_bytes: int = ...,
    ) -> None: ...
    def register(
        self, tools: list[dict[str, Any]], outputs: list[dict[str, Any]] | None
    ) -> None: ...
    def set_variables(self, specs: list[dict[str, Any]], blob: bytes | bytearray) -> None: ...
    def execute(self, code: str, max_output_chars: int) -> dict[str, Any]: ...

def main() -> None: ...
