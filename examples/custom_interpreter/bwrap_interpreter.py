"""A third-party sandbox adapter in ~30 lines: the bridge's guest under bubblewrap.

Everything but "how to start a process in the sandbox" comes from ``ChannelInterpreter``.
bubblewrap gives the guest a read-only /usr, an empty /tmp, no network, no host environment
and no view of the host's files; run the conformance suite to prove it.
"""

from __future__ import annotations

import shutil

from rlm_core.bridge.process import open_process_channel
from rlm_core.bridge.protocol import loader_argv
from rlm_core.bridge.session import ChannelInterpreter, GuestChannel
from rlm_core.errors import InterpreterUnavailableError
from rlm_core.interpreter import Capabilities


class BwrapInterpreter(ChannelInterpreter):
    """Runs the guest with Debian's python3 inside a bubblewrap namespace sandbox."""

    def __init__(self, python: str = "/usr/bin/python3") -> None:
        super().__init__()
        self.python = python

    @property
    def capabilities(self) -> Capabilities:
        """Namespaces: no network, no host env, only /usr visible; /tmp is a private tmpfs."""
        return Capabilities(
            isolation="container",
            network=False,
            writable_filesystem=True,
            survives_timeout=True,
            max_variable_bytes=None,
        )

    async def open_channel(self) -> GuestChannel:
        """Start the guest under ``bwrap``."""
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise InterpreterUnavailableError(
                "bubblewrap is not installed: apt-get install bubblewrap"
            )
        sandbox = [bwrap, "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib",
                   "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin",
                   "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--chdir", "/tmp",
                   "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
                   "--setenv", "PATH", "/usr/bin"]  # fmt: skip
        return await open_process_channel([*sandbox, *loader_argv(self.python)], env={})
