"""Distribution names and install hints agree with the pyproject files that define them."""

import re
import tomllib
from pathlib import Path

from rlm_core.registry import DISTRIBUTION, KNOWN_BACKENDS, install_hint

ROOT = Path(__file__).resolve().parents[1]


def project(path: Path) -> dict[str, object]:
    with path.open("rb") as handle:
        table = tomllib.load(handle)["project"]
    assert isinstance(table, dict)
    return table


def member_names() -> dict[str, Path]:
    files = [*ROOT.glob("interpreters/*/pyproject.toml"), ROOT / "conformance_tests/pyproject.toml"]
    return {str(project(path)["name"]): path.parent for path in files}


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None
    return match.group(0)


def test_every_distribution_is_one_family_with_the_core() -> None:
    assert project(ROOT / "pyproject.toml")["name"] == DISTRIBUTION
    for name in member_names():
        assert name.startswith(f"{DISTRIBUTION}-"), name


def test_each_known_backend_is_a_member_and_an_extra_of_the_core() -> None:
    members = member_names()
    extras = project(ROOT / "pyproject.toml")["optional-dependencies"]
    assert isinstance(extras, dict)
    for backend, distribution in KNOWN_BACKENDS.items():
        assert distribution in members, distribution
        assert (members[distribution] / f"rlm_{backend}").is_dir()
        assert [requirement_name(r) for r in extras[backend]] == [distribution]
    (everything,) = extras["all"]
    assert everything.startswith(f"{DISTRIBUTION}[")
    assert set(everything[len(DISTRIBUTION) + 1 : -1].split(",")) == set(KNOWN_BACKENDS)


def test_each_member_has_a_readme_it_ships() -> None:
    for name, folder in member_names().items():
        assert project(folder / "pyproject.toml")["readme"] == "README.md", name
        assert (folder / "README.md").read_text().startswith(f"# {name}")


def test_install_hint_names_the_extra() -> None:
    assert install_hint("docker") == 'pip install "rlmbox[docker]"'
    assert install_hint() == "pip install rlmbox"


def test_no_document_or_module_names_a_distribution_we_do_not_publish() -> None:
    published = {DISTRIBUTION, *member_names()}
    pattern = re.compile(r"pip install (?:--\S+ )*[\"']?([A-Za-z0-9._-]+)")
    stale = []
    for path in [*ROOT.glob("**/*.md"), *ROOT.glob("**/*.py")]:
        if ".venv" in path.parts or "node_modules" in path.parts:
            continue
        for found in pattern.findall(path.read_text(encoding="utf-8")):
            name = found.split("[")[0]
            if name.startswith("rlm") and name not in published:
                stale.append(f"{path.relative_to(ROOT)}: {found}")
    assert stale == []
