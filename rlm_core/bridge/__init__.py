"""The process bridge: one guest runtime and one host side for every backend with a process.

A backend that can start a Python process in its sandbox and hand over a byte channel to it
(Docker, E2B, Modal, subprocess, Deno, or yours) gets the whole interpreter contract from here:
:mod:`~rlm_core.bridge.guest` runs inside the sandbox (standard library only, CPython 3.8+ and
Pyodide), :mod:`~rlm_core.bridge.protocol` frames the messages (``docs/protocol.md``),
:mod:`~rlm_core.bridge.session` is the host side (:class:`ChannelInterpreter`) over any
channel, and :mod:`~rlm_core.bridge.process` spawns a local process and gives its stdio as one.
Nothing here imports the loop.
"""

__all__ = ["guest", "process", "protocol", "session"]
