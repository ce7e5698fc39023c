"""rlmbox-e2b: each interpreter session runs in its own E2B cloud sandbox (a Firecracker microVM).

Built on the official async ``e2b`` SDK (pinned). ``rlm_e2b.testing`` ships a local stand-in
for E2B's API and envd so code using this backend can be tested offline.
"""

from rlm_e2b._interpreter import E2BChannel, E2BInterpreter, guest_command

__all__ = ["E2BChannel", "E2BInterpreter", "guest_command"]
