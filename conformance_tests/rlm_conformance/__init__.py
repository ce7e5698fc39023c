"""rlmbox-conformance: the test suite every rlm interpreter backend must pass.

Subclass :class:`InterpreterConformance`, define the fixture ``make_interpreter``, run pytest.
Or, for an installed backend, run ``pytest --pyargs rlm_conformance --rlm-interpreter NAME``.
"""

from rlm_conformance._availability import REQUIRED_ENV, STRICT_ENV
from rlm_conformance._base import InterpreterFactory
from rlm_conformance._requires import requires
from rlm_conformance.suite import InterpreterConformance, RPCSandboxConformance

__all__ = [
    "REQUIRED_ENV",
    "STRICT_ENV",
    "InterpreterConformance",
    "InterpreterFactory",
    "RPCSandboxConformance",
    "requires",
]
