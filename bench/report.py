"""report.html: its size and how fast headless Chromium paints it, the page of today (runs
folded, bodies rendered when opened) against the baseline measured in the same run: the
same runs all open and rendered up front (``render_report(lazy=False)``, the page before).

    .venv/bin/python bench/report.py [RESULTS.json] [--trials 5]

RESULTS defaults to chaos-report/results.json (``bash scripts/main.sh`` writes it: the
reference suite). Prints per page the size, and the median (min-max) over the trials of
first contentful paint, DOMContentLoaded and load in ms, then each as a ratio
(folded / baseline). Trials alternate the two pages, each in a fresh browser profile.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from _cdp import Browser  # noqa: E402

from harness.report.html import load_runs, render_report  # noqa: E402

_TIMING = (
    "JSON.stringify([performance.getEntriesByName('first-contentful-paint')[0].startTime,"
    " performance.timing.domContentLoadedEventEnd - performance.timing.navigationStart,"
    " performance.timing.loadEventEnd - performance.timing.navigationStart])"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", default=str(ROOT / "chaos-report/results.json"))
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        parser.error("needs Chromium (apt-get install chromium; scripts/setup.sh does)")
    results = Path(args.results)
    if not results.is_file():
        parser.error(f"no {results}: run bash scripts/main.sh first, or name a results.json")
    runs = load_runs([results])
    work = Path(tempfile.mkdtemp(prefix="bench-report-"))
    pages = {
        "baseline (all open)": work / "eager.html",
        "folded (today)": work / "lazy.html",
    }
    pages["baseline (all open)"].write_text(render_report(runs, lazy=False), encoding="utf-8")
    pages["folded (today)"].write_text(render_report(runs), encoding="utf-8")
    print(f"{len(runs)} runs from {results}; {args.trials} trials per page")
    timings: dict[str, list[list[float]]] = {name: [] for name in pages}
    try:
        for trial in range(args.trials):
            for name, page in pages.items():
                browser = Browser(chromium, work / f"profile-{trial}-{page.stem}")
                try:
                    browser.open(page.as_uri())
                    timings[name].append(json.loads(browser.evaluate(_TIMING)))
                finally:
                    browser.close()
    finally:
        sizes = {name: page.stat().st_size for name, page in pages.items()}
        shutil.rmtree(work, ignore_errors=True)
    medians: dict[str, list[float]] = {}
    for name, rows in timings.items():
        columns = list(zip(*rows, strict=True))
        medians[name] = [statistics.median(c) for c in columns]
        figures = ", ".join(
            f"{label} {statistics.median(c):.0f} ({min(c):.0f}-{max(c):.0f})"
            for label, c in zip(("first paint", "DOMContentLoaded", "load"), columns, strict=True)
        )
        print(f"  {name:<20} {sizes[name] / 1024:7.0f} KiB; ms: {figures}")
    base, lazy = medians["baseline (all open)"], medians["folded (today)"]
    ratios = ", ".join(
        f"{label} {b / a:.2f}x"
        for label, a, b in zip(("first paint", "DOMContentLoaded", "load"), base, lazy, strict=True)
    )
    size_ratio = sizes["folded (today)"] / sizes["baseline (all open)"]
    print(f"folded / baseline: size {size_ratio:.2f}x; {ratios}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
