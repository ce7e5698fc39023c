"""What an RLM call returns: typed outputs as attributes, the trajectory, and usage."""

from __future__ import annotations

from typing import Any

from rlm_core.budget import UsageSummary
from rlm_core.tools import to_json
from rlm_core.trajectory import Step

__all__ = ["RESERVED_RESULT_NAMES", "RLMResult"]


class RLMResult:
    """The outputs of one run, plus how they were reached.

    Each output of the signature is an attribute (``result.answer``) holding the validated,
    typed value; ``result["answer"]`` works too.
    """

    __slots__ = ("_outputs", "extracted", "final_reasoning", "steps", "usage")

    def __init__(
        self,
        outputs: dict[str, Any],
        *,
        steps: list[Step],
        final_reasoning: str,
        usage: UsageSummary,
        extracted: bool,
    ) -> None:
        self._outputs = outputs
        self.steps = steps
        """The steps as objects (see :attr:`trajectory` for JSON)."""
        self.final_reasoning = final_reasoning
        """The model's reasoning on the step that produced the outputs."""
        self.usage = usage
        """Calls, tokens, USD and wall time of the whole run tree, per model."""
        self.extracted = extracted
        """True when the step budget ran out and the extract fallback produced the outputs."""

    @property
    def outputs(self) -> dict[str, Any]:
        """The outputs by name."""
        return dict(self._outputs)

    @property
    def trajectory(self) -> list[dict[str, Any]]:
        """Every step as JSON: reasoning, code, stdout, error, duration, sub-calls, usage."""
        return [s.to_dict() for s in self.steps]

    def __getattr__(self, name: str) -> Any:
        outputs = object.__getattribute__(self, "_outputs")
        if name in outputs:
            return outputs[name]
        raise AttributeError(f"the result has no output {name!r}; outputs: {sorted(outputs)}")

    def __getitem__(self, name: str) -> Any:
        return self._outputs[name]

    def to_dict(self) -> dict[str, Any]:
        """Outputs, trajectory and usage as one JSON-ready dict."""
        return {
            "outputs": {k: to_json(v) for k, v in self._outputs.items()},
            "extracted": self.extracted,
            "final_reasoning": self.final_reasoning,
            "usage": self.usage.to_dict(),
            "trajectory": self.trajectory,
        }

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self._outputs.items())
        note = ", extracted=True" if self.extracted else ""
        return f"RLMResult({shown}{note})"


RESERVED_RESULT_NAMES = frozenset(name for name in vars(RLMResult) if not name.startswith("_"))
"""Public attributes of :class:`RLMResult` (read from the class); outputs may not use them."""
