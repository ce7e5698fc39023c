"""Confine a local guest process: its own PID and mount namespaces, no capabilities, no escape.

Run as ``python -I -c <this file's source> -- ARGV...`` (stdlib only, CPython 3.8+, Linux).
When the kernel allows it (as root, or through an unprivileged user namespace) ``ARGV`` runs
in a new PID namespace under a small init with a fresh ``/proc``: guest code sees no host
process (so no host ``/proc/<pid>/environ``, ``mem`` or ptrace target), holds no capability,
and everything it starts (double-forked daemons included) dies with the init. Otherwise the
init is a child subreaper that kills every descendant when the guest ends or it is told to.
Either way it dies with its parent (``PR_SET_PDEATHSIG``), so a dead host leaves nothing.
``--probe`` prints which mode this machine allows, as JSON, and exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 1 << 18
ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)

_libc = ctypes.CDLL(None, use_errno=True)


def _call(name: str, *args: object) -> None:
    if getattr(_libc, name)(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{name}: {os.strerror(errno)}")


def _prctl(option: int, value: int) -> None:
    _call("prctl", option, ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0), 0)


def _die_with_parent(sig: int) -> None:
    """Get ``sig`` when the parent dies; if it already died, act as if the signal came."""
    parent = os.getppid()
    _prctl(PR_SET_PDEATHSIG, sig)
    if os.getppid() != parent:  # it died before the signal was armed
        os.kill(os.getpid(), sig)


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def _enter_namespaces() -> bool:
    """Unshare PID and mount namespaces (through a user namespace when not root)."""
    if os.environ.get("RLM_CONFINE_NO_NAMESPACES"):  # tests of the fallback set this
        return False
    uid, gid = os.getuid(), os.getgid()
    try:
        if uid == 0:
            _call("unshare", CLONE_NEWPID | CLONE_NEWNS)
        else:
            _call("unshare", CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS)
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
    except OSError as exc:
        if os.environ.get("RLM_CONFINE_DEBUG"):
            sys.stderr.write(f"rlm confine: no namespaces: {exc}\n")
        return False
    return True


def _mount_own_proc() -> None:
    """Keep mounts from reaching the host, then show only this namespace's processes."""
    _call("mount", None, b"/", None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None)
    flags = ctypes.c_ulong(MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _call("mount", b"proc", b"/proc", b"proc", flags, None)


def _drop_privileges() -> None:
    """No capability survives the exec, and none can be regained (setuid files included)."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    for cap in range(64):
        try:
            _prctl(PR_CAPBSET_DROP, cap)
        except OSError:
            break  # past the last capability this kernel knows
    with contextlib.suppress(OSError):
        _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)


def _kill_descendants() -> None:
    """SIGKILL every process below this one; orphans re-parent here (subreaper) and are next."""
    while True:
        children = []
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/children") as handle:
                    children += [int(pid) for pid in handle.read().split()]
            except OSError:
                pass
        if not children:
            return
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        try:
            while os.waitpid(-1, 0)[0] > 0:
                pass
        except ChildProcessError:
            pass


def _exit_like(status: int) -> None:
    """Exit as the guest did: its exit code, or 128 + the signal that killed it."""
    if os.WIFSIGNALED(status):
        os._exit(128 + os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def _supervise(argv: list[str], *, in_namespace: bool) -> None:
    """Run the guest as a child; when it ends (or we are told to end), nothing else survives."""
    if in_namespace:
        _mount_own_proc()
    else:
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
    # Guest code runs as this uid: it must not read this process's memory or ptrace it.
    _prctl(PR_SET_DUMPABLE, 0)
    guest = os.fork()
    if guest == 0:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the guest never outlives its supervisor
        for sig in ENDING_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        _drop_privileges()
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            sys.stderr.write(f"rlm confine: cannot run {argv[0]!r}: {exc}\n")
            os._exit(127)

    def end(signum: int, frame: object) -> None:
        _kill_descendants()
        os._exit(128 + signum)

    for sig in ENDING_SIGNALS:
        signal.signal(sig, end)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(1)
        if pid == guest:
            _kill_descendants()
            _exit_like(status)


def _relay(child: int) -> None:
    """Outside the namespace: wait for its init and exit (or die) the way the guest did."""

    def end(signum: int, frame: object) -> None:
        os.kill(child, signal.SIGKILL)
        os._exit(128 + signum)

    for sig in ENDING_SIGNALS:
        signal.signal(sig, end)
    _, status = os.waitpid(child, 0)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
    if code > 128 and code - 128 in (signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT):
        if code - 128 != signal.SIGKILL:
            signal.signal(code - 128, signal.SIG_DFL)
        os.kill(os.getpid(), code - 128)  # report a killed guest as killed, not as an exit code
    os._exit(code)


def main(args: list[str]) -> None:
    """``[--probe] -- ARGV...``: run ARGV confined as well as this machine allows."""
    probe = bool(args) and args[0] == "--probe"
    argv = args[args.index("--") + 1 :] if "--" in args else []
    if probe:
        argv = [sys.executable, "-I", "-c", "import os; print(os.getpid())"]
    elif not argv:
        sys.stderr.write("usage: confine [--probe] -- ARGV...\n")
        os._exit(2)
    in_namespace = _enter_namespaces()
    if not in_namespace:
        _die_with_parent(signal.SIGTERM)  # the subreaper cleans up before it goes
        if probe:
            sys.stdout.write(json.dumps({"namespaces": False}) + "\n")
            sys.stdout.flush()
            os._exit(0)
        _supervise(argv, in_namespace=False)
    _die_with_parent(signal.SIGKILL)
    if probe:
        # Prove the whole set-up works: the guest must see itself as a low pid in a new /proc.
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(read_end)
            os.dup2(write_end, 1)
            _supervise(argv, in_namespace=True)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            seen = pipe.read().strip()
        os.waitpid(child, 0)
        sys.stdout.write(json.dumps({"namespaces": seen == "2"}) + "\n")
        sys.stdout.flush()
        os._exit(0)
    # The init's parent is outside its namespace, so getppid() cannot tell it that the parent
    # died before PR_SET_PDEATHSIG was armed; the end of this pipe can.
    alive_read, alive_write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(alive_write)
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the namespace's init: all in it die with it
        os.set_blocking(alive_read, False)
        try:
            if os.read(alive_read, 1) == b"":
                os._exit(1)  # the parent is already gone
        except BlockingIOError:
            pass
        os.close(alive_read)
        _supervise(argv, in_namespace=True)
    os.close(alive_read)
    _relay(child)


if __name__ == "__main__":
    main(sys.argv[1:])
