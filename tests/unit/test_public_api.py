"""The public API: every name ``harness`` exports resolves, is the object its module
defines, and the README's Python examples import nothing private."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import harness

ROOT = Path(__file__).resolve().parents[2]


def test_every_exported_name_resolves_to_its_module_s_object() -> None:
    for name in harness.__all__:
        if name == "__version__":
            continue
        value = getattr(harness, name)
        module = importlib.import_module(harness._EXPORTS[name])
        assert value is getattr(module, name), name
    assert set(harness.__all__) <= set(dir(harness))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        harness.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018


def test_all_lists_exactly_the_exports() -> None:
    assert sorted(harness.__all__) == sorted(["__version__", *harness._EXPORTS])


def test_import_harness_stays_cheap() -> None:
    """A helper process (the proxy, a reaper) imports ``harness``: it must not pull in the
    engine, pytest or the database driver."""
    heavy = "('harness', 'psycopg', 'pytest', 'docker')"
    code = (
        f"import sys, harness; print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['harness']"


def test_the_readme_imports_only_the_public_api() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README has Python examples"
    imports = [
        line for b in blocks for line in b.splitlines() if line.startswith(("from ", "import "))
    ]
    assert imports
    for line in imports:
        if line.split()[1].split(".")[0] in sys.stdlib_module_names:
            continue  # the standard library (from pathlib import Path)
        alias = re.fullmatch(r"import harness as (\w+)", line)
        if alias:  # every name used through the alias is public
            used = set(re.findall(rf"\b{alias[1]}\.(\w+)", readme))
            assert used
            assert used <= set(harness.__all__), used - set(harness.__all__)
            continue
        assert line.startswith("from harness import "), line
        names = [n.strip() for n in line.removeprefix("from harness import ").split(",")]
        for name in names:
            assert name in harness.__all__, name
