"""rlm-modal backend (in progress)."""
