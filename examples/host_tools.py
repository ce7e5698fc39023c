"""Host tools: plain Python functions (sync or async) the model's code can call.

They run on the host, outside the sandbox, with their real signatures; their docstrings are
shown to the model. Use them for what the sandbox must not do itself (databases, APIs).
"""

from __future__ import annotations

import asyncio

from rlm_core import RLM, RLMResult
from rlm_core.lm import LM
from rlm_core.registry import InterpreterSpec

PARTS = {"cryocooler": ("CC-400", 3), "shutter motor": ("SM-12", 11), "UPS": ("UPS-9", 0)}


def stock(part: str) -> int:
    """How many spares of a part are in stores (0 if unknown)."""
    return PARTS.get(part, ("", 0))[1]


async def order(part: str, quantity: int = 1) -> str:
    """Order spares of a part from the vendor; returns the order number."""
    await asyncio.sleep(0.01)  # an async API call, awaited on the host's event loop
    return f"PO-{PARTS.get(part, ('X', 0))[0]}-{quantity}"


def main(lm: str | LM | None = None, interpreter: InterpreterSpec | None = None) -> RLMResult:
    rlm = RLM(
        "parts -> orders: list[str]",
        instructions="Order two spares of every part that has fewer than 5 in stores.",
        lm=lm,
        interpreter=interpreter,
        tools=[stock, order],
    )
    result = rlm(parts=sorted(PARTS))
    print(result.orders)
    return result


if __name__ == "__main__":
    main()
