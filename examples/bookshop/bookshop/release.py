"""The releases: one code base, rendering options chosen by ``--release``.

Both releases store the same data; they differ in how they render it, and v2 also knows the
``books.isbn`` column of migration 0002.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RELEASES", "Release"]


@dataclass(frozen=True, slots=True)
class Release:
    """What a release does differently."""

    #: The release's name, as ``--release`` takes it and ``/version`` reports it.
    name: str
    #: Render UTC timestamps with a ``Z`` suffix instead of ``+00:00``.
    timestamp_z: bool
    #: Render prices as JSON numbers (``12.5``) instead of strings with 2 places (``"12.50"``).
    price_as_number: bool
    #: Read and write ``books.isbn`` (needs migration 0002).
    knows_isbn: bool


#: Every release, by name.
RELEASES: dict[str, Release] = {
    release.name: release
    for release in (
        Release("v1", timestamp_z=False, price_as_number=False, knows_isbn=False),
        Release("v2", timestamp_z=True, price_as_number=True, knows_isbn=True),
    )
}
