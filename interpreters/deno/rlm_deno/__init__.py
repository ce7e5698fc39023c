"""rlm-deno backend (in progress)."""
