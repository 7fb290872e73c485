"""``results.json``: every run of a session (or of several CI shards), schema-versioned.

Each process that runs scenarios (the session itself, or each pytest-xdist worker) appends
one JSON line per finished run to ``<dir>/partial-<worker>.jsonl`` as it goes, so a crash
keeps what was done. The controlling process merges the partial files into
``<dir>/results.json`` at the end (:func:`merge_partials`); :func:`merge_results` merges the
``results.json`` of several shards (``deploy-chaos merge``).

A record is ``{"key", "nodeid", "seed", "replay", "judgement": {...}, "outcome": {...}}``
where ``outcome`` is :meth:`RunOutcome.to_json` (or null when the run crashed before it
produced one) and ``judgement`` is :meth:`Judgement.to_json`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import SpecError

__all__ = [
    "RESULTS_FILE",
    "RESULTS_SCHEMA_VERSION",
    "append_partial",
    "clear_partials",
    "load_results",
    "merge_partials",
    "merge_results",
    "run_key",
    "write_results",
]

RESULTS_SCHEMA_VERSION = 1
RESULTS_FILE = "results.json"
_PARTIAL_GLOB = "partial-*.jsonl"


def run_key(record: Mapping[str, Any]) -> str:
    """A run's key among a session's runs: its cell's key, ``#<n>`` for a repetition."""
    return str(record.get("rep_key") or record["key"])


def _order(rep_key: str) -> tuple[str, int]:
    key, _, number = rep_key.partition("#")
    return key, int(number) if number.isdigit() else 0


def append_partial(directory: Path, worker: str, record: Mapping[str, Any]) -> Path:
    """Append one run's record to this worker's partial file (one line, flushed)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"partial-{worker}.jsonl"
    line = json.dumps(record, sort_keys=True, default=str)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return path


def clear_partials(directory: Path) -> None:
    """Remove partial files an earlier session left (called by the controller at start)."""
    if directory.is_dir():
        for path in directory.glob(_PARTIAL_GLOB):
            path.unlink(missing_ok=True)


def _read_partials(directory: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for path in sorted(directory.glob(_PARTIAL_GLOB)):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError as exc:
                raise SpecError(f"not a JSON line ({exc})", source=path, line=number) from None
    return records


def write_results(
    directory: Path, records: Iterable[Mapping[str, Any]], *, meta: Mapping[str, Any]
) -> Path:
    """Write ``results.json`` (runs sorted by key and repetition; a later record of a run
    replaces one)."""
    by_key: dict[str, Mapping[str, Any]] = {}
    for record in records:
        by_key[run_key(record)] = record
    document = {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **dict(meta),
        "runs": [by_key[k] for k in sorted(by_key, key=_order)],
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / RESULTS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)
    return path


def merge_partials(directory: Path, *, meta: Mapping[str, Any]) -> Path | None:
    """Merge the partial files of ``directory`` into its results.json; remove them."""
    if not directory.is_dir():
        return None
    records = _read_partials(directory)
    path = write_results(directory, records, meta=meta)
    clear_partials(directory)
    return path


def load_results(path: Path) -> dict[str, Any]:
    """Read a results.json, checking its schema version."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SpecError(f"cannot read results: {exc}", source=path) from None
    version = document.get("schema_version") if isinstance(document, dict) else None
    if version != RESULTS_SCHEMA_VERSION:
        raise SpecError(
            f"results schema_version {version!r}", source=path, expected=str(RESULTS_SCHEMA_VERSION)
        )
    return dict(document)


def merge_results(paths: Sequence[Path], out_dir: Path) -> Path:
    """Merge several results.json (e.g. one per CI shard); a key in two files is an error."""
    records: dict[str, Mapping[str, Any]] = {}
    seeds: set[Any] = set()
    for path in paths:
        document = load_results(path)
        seeds.add(document.get("seed"))
        for record in document["runs"]:
            key = run_key(record)
            if key in records:
                raise SpecError(f"run {key} appears in more than one file", source=path)
            records[key] = record
    meta = {
        "seed": seeds.pop() if len(seeds) == 1 else sorted(map(str, seeds)),
        "merged": [str(p) for p in paths],
    }
    return write_results(out_dir, records.values(), meta=meta)
