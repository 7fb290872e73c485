"""``report.html``: one self-contained page (inline CSS, JS and SVG; no network).

First a summary (cells and runs per verdict, the session seed) and the recommendation
(harness.report.recommend); then the scorecard matrix in plan order (fault x point rows in
the scenario's order, strategy columns, cells coloured pass / known hazard / unexpected
failure, each linking to its run); then the runs, folded, each rendered only when opened
(its body is an inert ``<template>`` until then): a timeline chart (plan
steps, fault inject and heal, detection, recovery steps, and the workload's throughput and
error rate over time when the history gave a series), the verdicts with their evidence, the
seed and the replay command, the canary analyses and the exposure. Several results.json
(CI shards) merge into one
report.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.deploy.canary import exposure_text
from harness.expect import Cell
from harness.report.recommend import recommendation_lines
from harness.report.score import recovery_ran
from harness.report.terminal import ScoreEntry, exposure_cell

__all__ = ["ReportRun", "load_runs", "render_report", "write_report"]

_CELL_CLASS = {
    "pass": "pass",
    "known hazard": "hazard",
    "unexpected failure": "unexpected",
    "harness error": "unexpected",
}
_STRATEGY_ORDER = ("rollback", "roll_forward", "halt", "restore", "kill_switch")


@dataclass(frozen=True, slots=True)
class ReportRun:
    """One run as the report needs it (from a results.json record)."""

    key: str
    scenario: str
    fault: str
    point: str
    strategy: str
    seed: Any
    replay: str
    cell: str
    summary: str
    reasons: tuple[str, ...]
    outcome: Mapping[str, Any]
    verdicts: Mapping[str, Any]
    #: The cell's key (``key`` is the run's: ``#<n>`` after a repeat), the cell's own
    #: judgement over every run, and how many runs showed a violation.
    cell_key: str = ""
    cell_runs: int = 1
    cell_hits: int = 0
    cell_verdict: str = ""
    #: The scenario's comparison group, and the judged verdicts that were invalid.
    compare: str = ""
    violated: tuple[str, ...] = ()
    #: Where the run is in its scenario's matrix (fault, point, strategy: the file's
    #: order, which for points is the plan's), and its repetition; the session's seed.
    order: tuple[int, int, int] = (0, 0, 0)
    repetition: int = 0
    base_seed: Any = None

    @property
    def cell_text(self) -> str:
        """The cell's judgement, with its count after a repeat (``known hazard 3/5``)."""
        text = self.cell_verdict or self.cell
        return f"{text} {self.cell_hits}/{self.cell_runs}" if self.cell_runs > 1 else text

    @property
    def anchor(self) -> str:
        return "run-" + "".join(c if c.isalnum() else "-" for c in self.key)


def _run_from_record(record: Mapping[str, Any]) -> ReportRun:
    outcome = record.get("outcome") or {}
    judgement = record.get("judgement") or {}
    cell = record.get("cell") or judgement
    cell_key = str(record.get("key") or outcome.get("scenario", "?"))
    key = str(record.get("rep_key") or cell_key)
    return ReportRun(
        cell_key=cell_key,
        cell_runs=int(cell.get("runs", 1)),
        cell_hits=int(cell.get("hits", 0)),
        cell_verdict=str(cell.get("cell", "")),
        key=key,
        scenario=str(record.get("scenario") or outcome.get("scenario") or key.split("[", 1)[0]),
        fault=str(record.get("fault") or outcome.get("fault", "?")),
        point=str(record.get("point") or outcome.get("point", "?")),
        strategy=str(record.get("strategy") or outcome.get("strategy", "?")),
        seed=record.get("seed", outcome.get("seed")),
        replay=str(record.get("replay", "")),
        cell=str(judgement.get("cell", "unexpected failure")),
        summary=str(judgement.get("summary", "the run produced no judgement")),
        reasons=tuple(str(r) for r in judgement.get("reasons", ())),
        outcome=outcome,
        verdicts=record.get("verdicts") or outcome.get("verdicts") or {},
        compare=str(record.get("compare") or record.get("scenario") or ""),
        violated=tuple(str(v) for v in cell.get("violated", ())),
        order=_order(record.get("order")),
        repetition=int(record.get("repetition") or 0),
        base_seed=record.get("base_seed"),
    )


def _order(value: object) -> tuple[int, int, int]:
    if (
        isinstance(value, list | tuple)
        and len(value) == 3
        and all(isinstance(v, int) for v in value)
    ):
        return (value[0], value[1], value[2])
    return (0, 0, 0)


def _plan_order(run: ReportRun) -> tuple[str, int, int, int, int, str]:
    """Scenario, then the file's order of faults and points (the plan's, for points),
    strategies, repetitions; the key last (records without an order keep a stable one)."""
    return (run.scenario, *run.order, run.repetition, run.key)


def load_runs(paths: Sequence[Path]) -> list[ReportRun]:
    """Read every results.json (checked by harness.report.json) into report runs."""
    from harness.errors import SpecError
    from harness.report.json import load_results

    runs: dict[str, ReportRun] = {}
    for path in paths:
        for record in load_results(path)["runs"]:
            run = _run_from_record(record)
            if run.key in runs:
                raise SpecError(f"run {run.key} appears in more than one file", source=path)
            runs[run.key] = run
    return sorted(runs.values(), key=_plan_order)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _text(value: str) -> str:
    """Escaped for an element's text (quotes need no escaping there: a smaller page)."""
    return html.escape(value, quote=False)


def _strategies(runs: Iterable[ReportRun]) -> list[str]:
    seen = {r.strategy for r in runs}
    ordered = [s for s in _STRATEGY_ORDER if s in seen]
    return ordered + sorted(seen - set(ordered))


def _scorecard(runs: Sequence[ReportRun]) -> str:
    strategies = _strategies(runs)
    rows: dict[tuple[str, str, str], dict[str, ReportRun]] = {}
    for run in runs:  # a cell is shown by its first run (the others link from it)
        rows.setdefault((run.scenario, run.fault, run.point), {}).setdefault(run.strategy, run)
    out = ['<table class="scorecard"><thead><tr><th>scenario</th><th>fault</th><th>point</th>']
    out += [f"<th>{_e(s)}</th>" for s in strategies]
    out.append("</tr></thead><tbody>")
    # A row's place: the file's order of its fault and point (the plan's, for points).
    first: dict[tuple[str, str, str], tuple[int, int]] = {}
    for run in runs:
        row = (run.scenario, run.fault, run.point)
        first[row] = min(first.get(row, run.order[:2]), run.order[:2])
    for (scenario, fault, point), cells in sorted(
        rows.items(), key=lambda item: (item[0][0], first[item[0]], item[0])
    ):
        out.append(f"<tr><td>{_e(scenario)}</td><td>{_e(fault)}</td><td>{_e(point)}</td>")
        for strategy in strategies:
            found = cells.get(strategy)
            if found is None:
                out.append('<td class="none">-</td>')
                continue
            css = _CELL_CLASS.get(found.cell_verdict or found.cell, "unexpected")
            ran = recovery_ran(dict(found.verdicts))
            text = found.cell_text + (" (no recovery ran)" if ran is False else "")
            out.append(
                f'<td class="cell {css}" data-run="{_e(found.key)}" title="{_e(found.summary)}">'
                f'<a href="#{found.anchor}">{_e(text)}</a></td>'
            )
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


# -- the timeline chart ---------------------------------------------------------------------

_LANES = ("plan", "phases", "fault", "detection", "recovery")
_W, _LEFT, _LANE_H, _CHART_H = 900, 80, 22, 70


def _spans(
    events: Sequence[Mapping[str, Any]],
    start: str,
    ends: tuple[str, ...],
    key: Callable[[Mapping[str, Any]], str],
) -> list[tuple[float, float, str, bool]]:
    """(t0, t1, label, failed) for each start event matched by an end event."""
    opened: dict[str, float] = {}
    spans: list[tuple[float, float, str, bool]] = []
    end_t = max((float(e["t"]) for e in events), default=0.0)
    for event in events:
        kind, name, t = event["kind"], key(event), float(event["t"])
        if kind == start:
            opened.setdefault(name, t)
        elif kind in ends and name in opened:
            spans.append((opened.pop(name), t, name, kind.endswith("failed")))
    spans += [(t0, end_t, name, False) for name, t0 in opened.items()]
    return spans


def _timeline_svg(run: ReportRun) -> str:
    outcome = run.outcome
    events: list[Mapping[str, Any]] = list(outcome.get("events") or [])
    duration = max(
        [float(outcome.get("duration_s") or 0.0)] + [float(e["t"]) for e in events] + [0.001]
    )
    series = (outcome.get("history_stats") or {}).get("series") or []
    height = len(_LANES) * _LANE_H + 30 + (_CHART_H + 20 if series else 0)
    scale = (_W - _LEFT - 10) / duration

    def x(t: float) -> float:
        return _LEFT + t * scale

    parts = [
        f'<svg class="timeline" viewBox="0 0 {_W} {height}" width="100%" '
        'role="img" '
        f'aria-label="timeline of {_e(run.key)}">'
    ]
    for i, lane in enumerate(_LANES):
        y = 10 + i * _LANE_H
        parts.append(f'<text x="4" y="{y + 14}" class="lane">{lane}</text>')
        parts.append(
            f'<line x1="{_LEFT}" x2="{_W - 10}" y1="{y + 18}" y2="{y + 18}" class="grid"/>'
        )

    def bar(lane: int, t0: float, t1: float, label: str, css: str) -> None:
        y = 10 + lane * _LANE_H + 2
        width = max(2.0, (t1 - t0) * scale)
        parts.append(
            f'<rect x="{x(t0):.1f}" y="{y}" width="{width:.1f}" height="15" class="{css}">'
            f"<title>{_e(label)}: {t0:.2f}s - {t1:.2f}s</title></rect>"
        )
        if width > 40:
            parts.append(
                f'<text x="{x(t0) + 3:.1f}" y="{y + 12}" class="barlabel">'
                f"{_e(label[: int(width / 6)])}</text>"
            )

    first_step = next((float(e["t"]) for e in events if e["kind"] == "step_start"), None)
    if first_step is not None and first_step > 0:
        bar(0, 0.0, first_step, "setup: stack, seed data, backup, workload", "setup")
    for t0, t1, name, failed in _spans(
        events, "step_start", ("step_end", "step_failed"), lambda e: str(e["subject"])
    ):
        bar(0, t0, t1, name, "step failed" if failed else "step")
    for t0, t1, name, _ in _spans(
        events, "phase_start", ("phase_end",), lambda e: str(e["subject"])
    ):
        bar(1, t0, t1, name, "phase")
    for t0, t1, name, _ in _spans(
        events, "fault_inject", ("fault_heal", "fault_heal_failed"), lambda e: str(e["subject"])
    ):
        bar(2, t0, t1, name, "fault")
    for event in events:
        if event["kind"] == "detection":
            t = float(event["t"])
            parts.append(
                f'<path d="M{x(t):.1f},{10 + 3 * _LANE_H + 2} l6,8 l-6,8 l-6,-8 z" '
                f'class="detect"><title>{_e(event["subject"])}: {_e(event["detail"])}</title>'
                "</path>"
            )
    for t0, t1, name, failed in _spans(
        events,
        "recovery_step_start",
        ("recovery_step_end", "recovery_step_failed"),
        lambda e: str(e["subject"]),
    ):
        bar(4, t0, t1, name, "recovery failed" if failed else "recovery")
    axis_y = 10 + len(_LANES) * _LANE_H + 12
    for tick in range(int(duration) + 1):
        parts.append(f'<text x="{x(tick):.1f}" y="{axis_y}" class="tick">{tick}s</text>')
    if series:
        parts.append(_series_svg(series, x, axis_y + 8))
    parts.append("</svg>")
    return "".join(parts)


def _series_svg(series: Sequence[Any], x: Callable[[float], float], top: float) -> str:
    """Throughput (ops/s) and error rate polylines from [t, ok, fail, info] buckets."""
    points = []
    for bucket in series:
        if isinstance(bucket, Mapping):
            t, ok, fail, info = (float(bucket.get(k, 0)) for k in ("t", "ok", "fail", "info"))
        else:
            t, ok, fail, info = (float(v) for v in list(bucket)[:4])
        total = ok + fail + info
        points.append((t, total, (fail + info) / total if total else 0.0))
    peak = max((p[1] for p in points), default=1.0) or 1.0
    ops = " ".join(f"{x(t):.1f},{top + _CHART_H - n / peak * _CHART_H:.1f}" for t, n, _ in points)
    err = " ".join(f"{x(t):.1f},{top + _CHART_H - r * _CHART_H:.1f}" for t, _, r in points)
    return (
        f'<text x="4" y="{top + 12}" class="lane">ops/s</text>'
        f'<text x="4" y="{top + 26}" class="lane err">errors</text>'
        f'<polyline points="{ops}" class="ops"><title>throughput, peak {peak:.0f} ops/s'
        "</title></polyline>"
        f'<polyline points="{err}" class="errline"><title>error rate (0-100%)</title>'
        "</polyline>"
    )


# -- per run --------------------------------------------------------------------------------


def _verdicts(verdicts: Mapping[str, Any]) -> str:
    if not verdicts:
        return "<p>No verdicts recorded.</p>"
    rows = []
    for name in sorted(verdicts):
        verdict = verdicts[name]
        status = verdict.get("status", verdict) if isinstance(verdict, Mapping) else verdict
        evidence = verdict.get("evidence", {}) if isinstance(verdict, Mapping) else {}
        rows.append(
            f'<tr><td>{_e(name)}</td><td class="v-{_e(status)}">{_e(status)}</td>'
            f"<td><details><summary>evidence</summary><pre>"
            f"{_text(json.dumps(evidence, indent=1, sort_keys=True, default=str))}</pre>"
            "</details></td></tr>"
        )
    return (
        '<table class="verdicts"><thead><tr><th>invariant</th><th>verdict</th>'
        f"<th>evidence</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _entries(runs: Sequence[ReportRun]) -> list[ScoreEntry]:
    """Scorecard entries of the runs (a cell by its first run) for the recommendation."""
    out: dict[str, ScoreEntry] = {}
    for run in runs:
        if run.cell_key in out:
            continue
        until = (run.outcome.get("exposure") or {}).get("until_recovery")
        damaged = (run.outcome.get("exposure") or {}).get("damaged_writes", 0)
        out[run.cell_key] = ScoreEntry(
            scenario=run.scenario,
            fault=run.fault,
            point=run.point,
            strategy=run.strategy,
            cell=Cell(run.cell_verdict or run.cell),
            summary=run.summary,
            violated=run.violated,
            exposure=(
                exposure_cell(until["operations"], until["failed"], damaged) if until else ""
            ),
            compare=run.compare or run.scenario,
            recovery_ran=recovery_ran(dict(run.verdicts)),
        )
    return list(out.values())


def _recommendation(runs: Sequence[ReportRun]) -> str:
    lines = recommendation_lines(_entries(runs))
    if not lines:
        return ""
    head, *rest = lines
    items = "".join(
        f'<li class="{"best" if not line.startswith("    ") else "other"}">{_e(line.strip())}</li>'
        for line in rest
    )
    return f'<h2>Recommendation</h2><p>{_e(head)}</p><ul class="advice">{items}</ul>'


def _run_section(run: ReportRun, *, lazy: bool = True) -> str:
    outcome = run.outcome
    end = outcome.get("end_state") or {}
    instances = ", ".join(
        f"#{i.get('index')}: {i.get('release')}{'' if i.get('healthy') else ' (unhealthy)'}"
        for i in end.get("instances", [])
    )
    css = _CELL_CLASS.get(run.cell, "unexpected")
    reasons = "".join(f"<li>{_e(r)}</li>" for r in run.reasons)
    errors = "".join(
        f"<li>{_e(e.get('phase'))} {_e(e.get('subject'))}: {_e(e.get('message'))}</li>"
        for e in outcome.get("errors", [])
    )
    faults = "".join(
        f"<li>{_e(f.get('where'))}: lasted {_e(f.get('lasted_s'))}s"
        f" (declared {_e(f.get('declared_s'))}), healed by {_e(f.get('healed_by'))};"
        f" acted on {_e(json.dumps(f.get('acted_on'), sort_keys=True))}"
        + (f"; no effect: {_e(f.get('missed'))}" if f.get("missed") else "")
        + "</li>"
        for f in outcome.get("faults", [])
    )
    phases = ", ".join(
        f"{_e(p.get('name'))} {_e(p.get('served'))}/{_e(p.get('scheduled'))}"
        f" in {float(p.get('seconds') or 0):.2f}s" + ("" if p.get("complete") else " (short)")
        for p in outcome.get("phases", [])
    )
    exposure = outcome.get("exposure") or {}
    analyses = "".join(
        f"<li>{_e(a.get('step'))}: {_e(a.get('verdict'))}: {_e(a.get('detail'))}</li>"
        for a in outcome.get("analysis", [])
    )
    head = (
        f'<summary><span class="badge {css}">{_e(run.cell)}</span> <b>{_e(run.key)}</b>'
        f" {_e(run.summary)}</summary>"
    )
    body = (
        (f"<ul>{reasons}</ul>" if reasons else "") + "<dl>"
        f"<dt>seed</dt><dd>{_e(run.seed)}</dd>"
        f"<dt>replay</dt><dd><code>{_e(run.replay)}</code></dd>"
        f"<dt>detected</dt><dd>{_e(outcome.get('detected') or 'nothing')}</dd>"
        f"<dt>recovered</dt><dd>{_e(outcome.get('recovered'))}</dd>"
        f"<dt>end state</dt><dd>migrations {_e(end.get('migrations'))}; {_e(instances)}</dd>"
        f"<dt>duration</dt><dd>{float(outcome.get('duration_s') or 0):.1f}s "
        f"({float(outcome.get('fault_seconds') or 0):.1f}s inside the fault)</dd>"
        + (f"<dt>phases</dt><dd>{phases}</dd>" if phases else "")
        + (f"<dt>analysis</dt><dd><ul>{analyses}</ul></dd>" if analyses else "")
        + (f"<dt>exposure</dt><dd>{_e(exposure_text(exposure))}</dd>" if exposure else "")
        + (f"<dt>fault</dt><dd><ul>{faults}</ul></dd>" if faults else "")
        + "</dl>"
        + _timeline_svg(run)
        + _verdicts(run.verdicts)
        + (f"<h4>errors</h4><ul>{errors}</ul>" if errors else "")
    )
    if not lazy:
        return f'<details class="run" id="{run.anchor}" open>{head}{body}</details>'
    # Folded until opened: the body (timeline, evidence) is an inert <template> that the
    # browser parses but neither lays out nor paints until the run is opened.
    return (
        f'<details class="run" id="{run.anchor}">{head}<div class="body"></div>'
        f"<template>{body}</template></details>"
    )


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222}
h1{margin-bottom:.2em} .meta{color:#666}
table{border-collapse:collapse;margin:1em 0} th,td{border:1px solid #ccc;padding:4px 8px}
th{background:#f4f4f4;text-align:left} td.cell a{color:inherit;text-decoration:none;display:block}
.pass{background:#cdeccd} .hazard{background:#ffe2a8} .unexpected{background:#f6b8b8}
td.none{color:#aaa;text-align:center}
.badge{padding:2px 8px;border-radius:4px;font-size:.8em}
.run{border-top:1px solid #ddd;margin-top:.6em;padding-top:.4em}
.run>summary{cursor:pointer} .summary td,.summary th{border:none;padding:2px 12px 2px 0}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px} dt{color:#666}
svg.timeline{max-width:1000px;border:1px solid #eee;background:#fcfcfc}
svg .lane{font-size:11px;fill:#555} svg .lane.err{fill:#c33} svg .tick{font-size:10px;fill:#888}
svg .grid{stroke:#eee} svg .setup{fill:#ddd} svg .step{fill:#8ab4e8} svg .step.failed{fill:#e06666}
svg .phase{fill:#b6d7a8}
svg .fault{fill:#f0a040} svg .recovery{fill:#7cc47c} svg .recovery.failed{fill:#e06666}
svg .detect{fill:#c00} svg .barlabel{font-size:10px;fill:#123}
svg .ops{fill:none;stroke:#2a6fbd;stroke-width:1.5} svg .errline{fill:none;stroke:#c33}
.v-valid{color:#176b17} .v-invalid{color:#b00;font-weight:bold} .v-unknown{color:#888}
pre{max-height:20em;overflow:auto;background:#f7f7f7;padding:.5em}
#filter{margin:.5em 0}
ul.advice li.best{font-weight:bold;margin-top:.4em} ul.advice li.other{margin-left:1.5em}
"""

_JS = """
function fill(d) {
  var body = d.querySelector('div.body'), tpl = d.querySelector('template');
  if (body && tpl && !body.firstChild) body.appendChild(tpl.content.cloneNode(true));
}
document.querySelectorAll('details.run').forEach(function (d) {
  d.addEventListener('toggle', function () { if (d.open) fill(d); });
});
function openHash() {
  var d = location.hash && document.getElementById(location.hash.slice(1));
  if (d && d.tagName === 'DETAILS') { d.open = true; fill(d); d.scrollIntoView(); }
}
window.addEventListener('hashchange', openHash);
openHash();
document.getElementById('filter').addEventListener('change', function (e) {
  var want = e.target.value;
  document.querySelectorAll('details.run').forEach(function (s) {
    s.style.display = (want === 'all' || s.querySelector('.badge.' + want)) ? '' : 'none';
  });
});
document.getElementById('open-all').addEventListener('click', function () {
  document.querySelectorAll('details.run').forEach(function (d) { d.open = true; fill(d); });
});
"""


def _summary(runs: Sequence[ReportRun]) -> str:
    """Counts (cells and runs), the session seed(s) and the scenarios, first on the page."""
    cells: dict[str, ReportRun] = {}
    for run in runs:
        cells.setdefault(run.cell_key or run.key, run)
    rows = []
    for label, css in (
        ("pass", "pass"),
        ("known hazard", "hazard"),
        ("unexpected failure", "unexpected"),
        ("harness error", "unexpected"),
    ):
        n_cells = sum(1 for r in cells.values() if (r.cell_verdict or r.cell) == label)
        n_runs = sum(1 for r in runs if r.cell == label)
        if n_cells or n_runs or label != "harness error":
            rows.append(
                f'<tr><td><span class="badge {css}">{_e(label)}</span></td>'
                f"<td>{n_cells} cell(s)</td><td>{n_runs} run(s)</td></tr>"
            )
    seeds = (
        sorted({str(r.base_seed) for r in runs if r.base_seed is not None})
        or sorted({str(r.seed) for r in runs})[:1]
    )
    scenarios = sorted({r.scenario for r in runs})
    return (
        f'<table class="summary"><tbody>{"".join(rows)}</tbody></table>'
        f'<p class="meta">{len(cells)} cells, {len(runs)} runs in {len(scenarios)} scenario(s)'
        f" ({_e(', '.join(scenarios))}); session seed {_e(', '.join(seeds))}; each run's own"
        f" seed and replay command are in its section; generated"
        f" {_e(time.strftime('%Y-%m-%d %H:%M:%S'))}</p>"
    )


def render_report(
    runs: Sequence[ReportRun], *, title: str = "deploy-chaos report", lazy: bool = True
) -> str:
    """The whole page as a string: the summary and the recommendation first, then the
    scorecard in plan order, then every run folded (``lazy``: its body rendered only when
    it is opened; False: every run open and rendered, the old page)."""
    ordered = sorted(runs, key=_plan_order)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>"
        + _summary(ordered)
        + _recommendation(ordered)
        + "<h2>Scorecard</h2>"
        + _scorecard(ordered)
        + '<h2>Runs</h2><label>show <select id="filter"><option value="all">all</option>'
        '<option value="unexpected">unexpected failures</option>'
        '<option value="hazard">known hazards</option><option value="pass">passes</option>'
        '</select></label> <button id="open-all" type="button">open all</button>'
        + "".join(_run_section(r, lazy=lazy) for r in ordered)
        + f"<script>{_JS}</script></body></html>"
    )


def write_report(
    paths: Sequence[Path], out: Path, *, progress: Callable[[str], None] | None = None
) -> Path:
    """Merge ``paths`` (results.json files) into one self-contained HTML file at ``out``."""
    say = progress or (lambda _m: None)
    say(f"report: reading {len(paths)} results file(s)")
    runs = load_runs(paths)
    say(f"report: rendering {len(runs)} run(s)")
    page = render_report(runs)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    say(f"report: wrote {out} ({len(page) // 1024} KiB)")
    return out
