"""rlm-e2b backend (in progress)."""
