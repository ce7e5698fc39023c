"""rlmbox-deno: the default sandbox, Python in Pyodide (WebAssembly) inside a locked-down Deno.

No daemon and no container engine: ``pip install "rlmbox[deno]"`` brings Deno, and Pyodide comes
from the npm registry into the per-user cache on first use (or from a local directory on
air-gapped machines). See :class:`DenoInterpreter` for the policy settings and
:class:`DenoPool` for starts that do not wait for a boot.
"""

from rlm_deno._interpreter import MAX_VARIABLE_BYTES, DenoInterpreter, DenoPool
from rlm_deno._setup import DENO_VERSION, PYODIDE_VERSION

__all__ = ["DENO_VERSION", "MAX_VARIABLE_BYTES", "PYODIDE_VERSION", "DenoInterpreter", "DenoPool"]
