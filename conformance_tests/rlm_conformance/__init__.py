"""rlm conformance suite (in progress)."""
