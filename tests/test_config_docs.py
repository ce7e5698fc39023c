"""The settings table in docs/configuration.md states every setting and its real default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rlm_core.config import Settings

TABLE = Path(__file__).parents[1] / "docs" / "configuration.md"


def _documented_defaults() -> dict[str, str]:
    """``setting -> default cell`` for each row of the settings table."""
    rows: dict[str, str] = {}
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        for name in re.findall(r"`([a-z_]+)", cells[0]):
            rows[name] = cells[1]
    return rows


def _as_written(default: object) -> str:
    if default is None:
        return "none"
    if isinstance(default, str):
        return f'`"{default}"`'
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


def test_every_setting_is_documented() -> None:
    """A setting added to Settings without a row in the table fails here."""
    assert set(Settings.model_fields) <= set(_documented_defaults())


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_documented_default_is_the_real_one(name: str) -> None:
    """Each row's default is what Settings really uses (a derived default names its source)."""
    field = Settings.model_fields[name]
    written = _documented_defaults()[name]
    if field.default_factory is not None or (name == "sub_model" and written == "`model`"):
        return  # a table of backend options, or "same as model": not a literal
    assert written == _as_written(field.default)
