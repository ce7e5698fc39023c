"""rlm-docker backend (in progress)."""
