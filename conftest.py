"""Guards and defaults for the whole test run: no test may damage the machine it runs on.

Guest code in these tests runs as the user running pytest (root in CI) on the backends without
a filesystem boundary; a test whose guest deletes or replaces a device node would break every
later test in confusing ways. Each test is checked, so the one that did it is named.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

import pytest

DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom")


def _damaged() -> list[str]:
    return [path for path in DEVICES if not stat.S_ISCHR(os.stat(path).st_mode)]


@pytest.fixture(autouse=True)
def _devices_stay_devices() -> Iterator[None]:
    """Fail the test after which a device node is no longer a character device."""
    yield
    damaged = _damaged()
    assert not damaged, f"this test left {damaged} no longer character devices"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Async tests run on asyncio (anyio would also run them on trio, which is installed).

    Module scope, like anyio's own default, so module-scoped async fixtures can use it.
    """
    return "asyncio"
