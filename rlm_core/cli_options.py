"""Command-line options that several ``rlm`` subcommands share, each worded once.

``rlm run``, ``rlm batch`` and ``rlm bench`` all choose a model, a sub-model and a server the
same way, and ``run``, ``exec`` and ``batch`` all choose a backend the same way.
"""

from __future__ import annotations

import argparse

__all__ = ["add_interpreter_option", "add_model_options"]

MODEL_HELP = "litellm model string (default: the model setting)"


def add_model_options(
    parser: argparse.ArgumentParser, *, model_help: str = MODEL_HELP, required: bool = False
) -> None:
    """Add ``--model``/``-m``, ``--sub-model`` and ``--api-base``.

    Args:
        parser: The subcommand's parser.
        model_help: Help for ``--model`` where it differs (``rlm bench`` also takes scripted
            models and has no model setting to fall back on).
        required: Whether ``--model`` must be given.
    """
    parser.add_argument("--model", "-m", required=required, help=model_help)
    parser.add_argument("--sub-model", help="model for llm_query and rlm_query (default: --model)")
    parser.add_argument("--api-base", help="base URL of an OpenAI-compatible server")


def add_interpreter_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--interpreter``/``-i``: a backend name or spec, defaulting to the setting."""
    parser.add_argument("--interpreter", "-i", help="backend name or spec (default: setting)")
