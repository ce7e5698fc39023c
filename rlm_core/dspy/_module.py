"""RLMModule: an RLM as a module of a DSPy program, whose instructions DSPy's optimizers tune.

:class:`RLMModule` is a ``dspy.Module`` with one predictor, ``predict``, whose signature holds
the RLM's inputs, outputs and instructions. That predictor is never sent to a model itself:
each call runs an :class:`~rlm_core.rlm.RLM` with the predictor's *current* instructions and
records the call in DSPy's trace under it, so optimizers that rewrite instructions (GEPA,
MIPROv2, COPRO) tune the task description the RLM's root model reads, and a saved program
keeps it. The root model is ``lm=``, else the predictor's ``lm``, else DSPy's configured one
(``dspy.configure(lm=...)``), else the ``model`` setting (``RLM_MODEL``).
"""

from __future__ import annotations

from typing import Any

import dspy

from rlm_core.errors import ConfigError
from rlm_core.result import RLMResult
from rlm_core.rlm import RLM
from rlm_core.signature import Field, Signature, SignatureSpec, ensure_signature

__all__ = ["RLMModule"]


class RLMModule(dspy.Module):  # type: ignore[misc]  # dspy ships no type information
    """``dspy.RLM``'s place in a DSPy program, run by this toolkit's loop and sandboxes.

    Args:
        signature: ``"context, query -> answer: int"``, a ``dspy.Signature`` class, or a
            :class:`~rlm_core.signature.Signature` class.
        **options: Everything :class:`~rlm_core.rlm.RLM` takes besides the signature
            (``interpreter``, ``tools``, ``sub_lm``, ``max_iterations``, budgets, ...).
            ``lm`` overrides the DSPy-configured model for this module.

    Calling it returns a ``dspy.Prediction`` with one attribute per output, plus
    ``trajectory`` (the steps as JSON) and ``final_reasoning``, as ``dspy.RLM`` does.
    """

    def __init__(
        self, signature: str | type[Signature] | type[dspy.Signature], **options: Any
    ) -> None:
        super().__init__()
        if "instructions" in options:
            raise ConfigError(
                "RLMModule's instructions live in its predictor, where optimizers tune them: "
                "put them in the signature (a class docstring) or set "
                "module.predict.signature = module.predict.signature.with_instructions(text)"
            )
        self._fields = _spec_of(signature, options.pop("types", None))
        self.predict = dspy.Predict(_dspy_signature(self._fields))
        self._options = options
        RLM(self._fields, **options)  # checks the options now; the model may be configured later

    @property
    def instructions(self) -> str:
        """The task description the next call's root model reads (the predictor's)."""
        return str(self.predict.signature.instructions)

    def forward(self, **inputs: Any) -> dspy.Prediction:
        """Run the RLM on ``inputs`` (the signature's input fields)."""
        return self._record(inputs, self._rlm()(**inputs))

    async def aforward(self, **inputs: Any) -> dspy.Prediction:
        """Run the RLM on ``inputs`` without blocking the event loop."""
        return self._record(inputs, await self._rlm().acall(**inputs))

    def _rlm(self) -> RLM:
        options = dict(self._options)
        lm = options.pop("lm", None) or self.predict.lm or dspy.settings.lm
        rlm = RLM(self._fields.with_instructions(self.instructions), lm=lm, **options)
        if lm is None and rlm.settings.model is None:
            raise ConfigError(
                "RLMModule has no model: configure DSPy's (dspy.configure(lm=dspy.LM("
                "'provider/model'))), pass lm=..., or set RLM_MODEL"
            )
        return rlm

    def _record(self, inputs: dict[str, Any], result: RLMResult) -> dspy.Prediction:
        prediction = dspy.Prediction(
            **result.outputs,
            trajectory=result.trajectory,
            final_reasoning=result.final_reasoning,
        )
        trace = dspy.settings.trace
        if trace is not None:  # how optimizers see which predictor produced what
            trace.append((self.predict, dict(inputs), prediction))
        return prediction


def _spec_of(signature: Any, types: Any) -> SignatureSpec:
    if isinstance(signature, type) and issubclass(signature, dspy.Signature):
        declared: Any = signature  # dspy has no types for mypy to follow
        return ensure_signature(
            SignatureSpec(
                inputs=tuple(_field(n, i) for n, i in declared.input_fields.items()),
                outputs=tuple(_field(n, i) for n, i in declared.output_fields.items()),
                instructions=str(declared.instructions),
            )
        )
    return ensure_signature(signature, types=types)


def _field(name: str, info: Any) -> Field:
    description = str((info.json_schema_extra or {}).get("desc") or "")
    if description == f"${{{name}}}":  # DSPy's placeholder for "no description"
        description = ""
    return Field(name=name, annotation=info.annotation, description=description)


def _dspy_signature(spec: SignatureSpec) -> Any:
    fields: dict[str, tuple[Any, Any]] = {}
    for group, make in ((spec.inputs, dspy.InputField), (spec.outputs, dspy.OutputField)):
        for f in group:
            fields[f.name] = (f.annotation, make(desc=f.description) if f.description else make())
    # Without instructions DSPy writes "Given the fields ..., produce the fields ...".
    return dspy.make_signature(fields, spec.instructions or None)
