"""SubprocessInterpreter: the bridge's guest in a local child process."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Any

from rlm_core.bridge.process import confined_argv, local_process_capabilities, open_process_channel
from rlm_core.bridge.protocol import loader_argv
from rlm_core.bridge.session import ChannelInterpreter, GuestChannel
from rlm_core.errors import InterpreterUnavailableError
from rlm_core.interpreter import Capabilities

# The guest's environment is built from scratch: host secrets never reach model-written code.
_SAFE_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "SYSTEMROOT")


class SubprocessInterpreter(ChannelInterpreter):
    """Runs the guest as ``python -I`` in a fresh process group with a clean environment.

    The guest runs under :mod:`rlm_core.bridge.confine`: it dies with the host, nothing it
    starts outlives :meth:`aclose`, and where the kernel allows it the guest has its own PID
    namespace and no capabilities, so no host process is visible to it.

    Args:
        python: The interpreter to run (any CPython 3.8+); defaults to the host's own.
        env: Extra environment variables to pass to the guest (nothing else is inherited
            beyond PATH and locale settings).
        cwd: The guest's working directory; a fresh temporary directory by default.
        interrupt_grace_s: Seconds a timed-out cell gets to stop before the process is killed.
    """

    def __init__(
        self,
        *,
        python: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        interrupt_grace_s: float | None = None,
    ) -> None:
        super().__init__(interrupt_grace_s=interrupt_grace_s)
        self.python = python or sys.executable
        self.env = dict(env or {})
        self.cwd = cwd
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None

    @classmethod
    def from_url(cls, target: str, **options: Any) -> SubprocessInterpreter:
        """``subprocess:///usr/bin/python3.12`` picks the guest interpreter."""
        return cls(python=target, **options)

    @property
    def capabilities(self) -> Capabilities:
        """A separate process: not a security boundary; survives timeouts via SIGINT.

        The host's environment is out of reach only where this machine allows PID
        namespaces (see :func:`rlm_core.bridge.process.local_process_capabilities`).
        """
        return local_process_capabilities()

    async def open_channel(self) -> GuestChannel:
        """Start the guest as a child process."""
        python = shutil.which(self.python)
        if python is None:
            raise InterpreterUnavailableError(
                f"Python interpreter {self.python!r} was not found; pass python='/path/to/python3' "
                "(any CPython 3.8 or newer)."
            )
        env = {k: v for k, v in os.environ.items() if k in _SAFE_ENV}
        env.update(self.env)
        cwd = self.cwd
        if cwd is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="rlm-subprocess-")
            cwd = self._tmpdir.name
        argv = confined_argv(loader_argv(python), python=python)
        return await open_process_channel(argv, env=env, cwd=cwd)

    async def aclose(self) -> None:
        """Stop the guest and remove its temporary working directory."""
        try:
            await super().aclose()
        finally:
            if self._tmpdir is not None:
                self._tmpdir.cleanup()
                self._tmpdir = None
