"""Long messages keep their start and their end (a migration tool's error is its last line)."""

from __future__ import annotations

from harness.errors import clip


def test_a_long_message_keeps_its_end() -> None:
    text = "migrate: running 0003 " + "x" * 3000 + " ERROR: column currency already exists"
    clipped = clip(text, 300)
    assert len(clipped) <= 300
    assert clipped.startswith("migrate: running 0003")
    assert clipped.endswith("ERROR: column currency already exists")
    assert " ... " in clipped
    assert clip("short", 300) == "short"
