"""rlmbox-modal: the guest runs in a Modal cloud sandbox, driven through the real ``modal`` SDK.

Each interpreter owns one sandbox (a gVisor container in Modal's cloud, network blocked by
default) and speaks the bridge protocol over an exec'd ``python3``'s stdin and stdout.
:mod:`rlm_modal.testing` holds a local stand-in of the Modal API for tests without the cloud.
"""

from rlm_modal._interpreter import ModalInterpreter

__all__ = ["ModalInterpreter"]
