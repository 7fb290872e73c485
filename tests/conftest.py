"""Test-suite wide settings: tests are marked by cost from the directory they live in."""

from __future__ import annotations

from pathlib import Path

import pytest

_BY_DIR = {"integration": "integration", "docker": "docker", "e2e": "integration"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.path)).parts
        for directory, marker in _BY_DIR.items():
            if directory in parts:
                item.add_marker(marker)
