"""Recursive Language Models with pluggable sandboxes."""
