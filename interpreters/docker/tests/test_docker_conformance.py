"""The Docker backend passes the shared conformance suite against a real engine."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from rlm_conformance import InterpreterConformance, InterpreterFactory
from rlm_core.errors import InterpreterUnavailableError
from rlm_docker import DockerInterpreter
from rlm_docker._engine import LABEL_MANAGED, LABEL_OWNER_PID, connect


class TestDockerConformance(InterpreterConformance):
    @pytest.fixture
    def make_interpreter(self) -> InterpreterFactory:
        return lambda: DockerInterpreter()

    @pytest.fixture(autouse=True)
    def _no_leaked_containers(self) -> Iterator[None]:
        """After each test, no container of this process may remain."""
        yield
        try:
            client = connect(None, 30)
        except InterpreterUnavailableError:
            return  # the suite itself reports an unavailable engine
        with client:
            labels = [f"{LABEL_MANAGED}=1", f"{LABEL_OWNER_PID}={os.getpid()}"]
            leaked = client.containers(all=True, filters={"label": labels})
            for info in leaked:
                client.remove_container(info["Id"], force=True)
        assert not leaked, f"containers left behind: {[info['Names'] for info in leaked]}"
