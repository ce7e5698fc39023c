"""rlm-mock backend (in progress)."""
