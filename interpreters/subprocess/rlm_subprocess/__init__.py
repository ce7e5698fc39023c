"""rlmbox-subprocess: a local ``python3 -I`` child process as the sandbox.

The reference backend for the process bridge. It keeps the guest out of the host's memory,
environment and working directory, but it is **not a security boundary**: guest code runs as
the host user with the host's filesystem and network. Use deno, docker, e2b or modal for that.
"""

from rlm_subprocess._interpreter import SubprocessInterpreter

__all__ = ["SubprocessInterpreter"]
