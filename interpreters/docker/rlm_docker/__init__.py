"""rlmbox-docker: the guest in a locked-down container on any Docker-compatible engine.

The container has no network, a read-only root with a tmpfs at ``/tmp``, no capabilities, no
new privileges, a non-root user and memory, CPU and process limits; each can be relaxed. Any
image with CPython 3.8+ works; ``scripts/docker-engine.sh build-image`` builds one offline.
"""

from rlm_docker._interpreter import DEFAULT_IMAGE, DockerInterpreter

__all__ = ["DEFAULT_IMAGE", "DockerInterpreter"]
