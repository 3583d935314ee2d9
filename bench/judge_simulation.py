"""The sequential judge against today's thresholds, Flagger, Argo Rollouts and Kayenta.

``make bench-judge`` (``python -m bench.judge_simulation``). Simulates canaries
on synthetic request streams (``bench/judge_sim/world.py``: Poisson traffic
that moves, heavy-tailed latency, segments, machine-wide stalls, per-process
pauses, each revision scraped at its own phase) and runs, on the *same*
counters of each canary, the operator's real sequential judge
(``modelcanary.analysis.judge``, not a copy of its math) and the peers
(``bench/judge_sim/peers.py``), then prints:

1. validity under the null (candidate identical to stable, every source of
   trouble on, 3 count metrics, a look every second for the whole canary):
   the false-rollback rate with its exact 95% interval against ``alpha``,
   per metric and by traffic;
2. the judge's time to detect each fault, and the false-rollback rate under
   severe machine-wide stalls, which must not be rolled back;
3. each peer at its documented defaults and tuned (over a small grid of
   interval, window and threshold) to the judge's false-rollback rate;
4. one table, judge by fault, and a stress table of the judge's validity
   when parts of the world are switched off or the looks are spaced out.

Why a simulation: a false-rollback *rate* needs thousands of canaries, and
the question is what each judge does with the same evidence; the e2e tests
show the judge working on real servers, this shows how often it is wrong.

Cost: the judge takes 2-6 ms per look for three metrics (pure Python), so a
canary is kept to 3 minutes (10% for 60 s, 50% for 60 s, a 60 s bake at 100%)
at one look a second; the default run (2,000 null canaries, 200 per fault,
60 per stress family) takes about 20 minutes on 2 idle cores, spread over worker
processes (``--workers``). numpy drives the simulation: it is in the venv
through the dev dependencies (matplotlib), never in the operator's image.
``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import multiprocessing
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.judge_sim import report
from bench.judge_sim.anytime import METRICS
from bench.judge_sim.peers import PEERS, mann_whitney_z
from bench.judge_sim.report import Table
from bench.judge_sim.scenarios import (
    SCENARIOS,
    STRESS,
    CanaryResult,
    Task,
    run,
)
from bench.judge_sim.stats import clopper_pearson

REPO = Path(__file__).resolve().parents[1]
JUDGE_FILES = (
    "operator/modelcanary/analysis/judge.py",
    "operator/modelcanary/analysis/sequential.py",
    "operator/modelcanary/analysis/counts.py",
)


def judge_fingerprint() -> str:
    """A hash of the judge's source, so a table names the judge it came from."""
    digest = hashlib.sha256()
    for name in JUDGE_FILES:
        digest.update((REPO / name).read_bytes())
    return digest.hexdigest()[:12]


def check_mann_whitney() -> str:
    """Our tie-corrected Mann-Whitney z against scipy's, when scipy is importable."""
    try:
        from scipy.stats import mannwhitneyu  # noqa: PLC0415
    except ImportError:
        return "scipy not importable: the Mann-Whitney test is our own normal approximation"
    rng = np.random.default_rng(0)
    a = rng.multinomial(300, [0.5, 0.3, 0.15, 0.05]).astype(float)
    b = rng.multinomial(500, [0.55, 0.3, 0.1, 0.05]).astype(float)
    ours = float(mann_whitney_z(a[None, :], b[None, :])[0])
    x = np.repeat(np.arange(4), a.astype(int))
    y = np.repeat(np.arange(4), b.astype(int))
    p = float(mannwhitneyu(x, y, alternative="greater", method="asymptotic").pvalue)
    mine = 0.5 * math.erfc(ours / math.sqrt(2))
    if abs(mine - p) > 1e-9 * max(1.0, p):
        raise SystemExit(f"Mann-Whitney self-check failed: ours p={mine}, scipy p={p}")
    return f"Mann-Whitney checked against scipy {_scipy_version()} (p={p:.4g} both)"


def _scipy_version() -> str:
    import scipy  # noqa: PLC0415

    return str(scipy.__version__)


def tasks(args: argparse.Namespace) -> list[Task]:
    out = [Task("null", "main", i, args.seed, args.alpha, True) for i in range(args.canaries)]
    for scenario in SCENARIOS[1:]:
        out += [
            Task(scenario.name, "main", i, args.seed, args.alpha, True)
            for i in range(args.fault_canaries)
        ]
    for variant in STRESS:
        families = ("null",) if variant.name == "iid" else ("null", "stall")
        for family in families:
            out += [
                Task(family, variant.name, i, args.seed, args.alpha, False)
                for i in range(args.stress_canaries)
            ]
    return out


def simulate_all(work: list[Task], workers: int) -> list[CanaryResult]:
    results: list[CanaryResult] = []
    started = time.monotonic()
    step = max(1, len(work) // 20)
    if workers <= 1:
        iterator = map(run, work)
        for result in iterator:
            results.append(result)
            _progress(len(results), len(work), started, step)
        return results
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        for result in pool.imap_unordered(run, work, chunksize=4):
            results.append(result)
            _progress(len(results), len(work), started, step)
    return results


def _progress(done: int, total: int, started: float, step: int) -> None:
    if done % step == 0 or done == total:
        spent = time.monotonic() - started
        print(f"  {done}/{total} canaries, {spent:.0f}s", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- tables


def validity(results: Sequence[CanaryResult], alpha: float) -> Table:
    null = [r for r in results if r.scenario == "null" and r.variant == "main"]
    stall = [r for r in results if r.scenario == "stall" and r.variant == "main"]
    table = Table(
        f"1. Validity: false rollbacks of the sequential judge (alpha = {alpha:g})",
        ("canaries", "false rollbacks [95% Clopper-Pearson]", "vs alpha"),
    )

    def row(label: str, runs: Sequence[CanaryResult]) -> None:
        k = report.rollbacks(r.ours for r in runs)
        low, _ = clopper_pearson(k, len(runs)) if runs else (0.0, 0.0)
        verdict = "ABOVE alpha" if low > alpha else ("within" if runs else "")
        table.rows.append((label, report.rate_cell(k, len(runs)), verdict))

    row("null (candidate = stable)", null)
    for low, high in ((1, 10), (10, 100)):
        band = [r for r in null if low <= r.rate / 10 < high]
        row(f"  null, {low}-{high} rps to the candidate at 10%", band)
    row("severe machine-wide stalls (both revisions)", stall)
    per_metric = ", ".join(
        f"{m.name} {sum(m.name in r.ours_metrics for r in null)}" for m in METRICS
    )
    table.notes.append(
        f"Null false rejections per metric, each judged to the end at alpha/3: {per_metric}."
    )
    table.notes.append(
        "'ABOVE alpha' means the whole 95% interval lies above alpha: the judge is not "
        "valid in that regime."
    )
    return table


def detection(results: Sequence[CanaryResult]) -> Table:
    table = Table(
        "2. Time to detect, sequential judge (from the candidate's first request)",
        ("fault", "canaries", "detected", "median / p95", "first failing metric"),
    )
    for scenario in SCENARIOS:
        if not scenario.harmful:
            continue
        runs = [r for r in results if r.scenario == scenario.name and r.variant == "main"]
        times = [r.ours for r in runs]
        first: dict[str, int] = {}
        for r in runs:
            if r.ours_metrics:
                name = min(r.ours_metrics, key=lambda m: r.ours_metrics[m])
                first[name] = first.get(name, 0) + 1
        table.rows.append(
            (
                scenario.title,
                str(len(runs)),
                f"{100 * report.rollbacks(times) / max(1, len(runs)):.1f}%",
                report.detection_cell(times),
                ", ".join(f"{k} {v}" for k, v in sorted(first.items())) or "-",
            )
        )
    return table


def settings(results: Sequence[CanaryResult], picked: list[tuple[str, report.Choice]]) -> Table:
    table = Table(
        "3. Peer settings: documented defaults, and tuned to a false-rollback rate",
        ("judge", "row", "settings", "null false rollbacks"),
    )
    for kind, choice in picked:
        times = report.peer_times(results, choice, "null")
        note = "" if choice.matched else " (no setting in the grid got this low)"
        table.rows.append(
            (
                choice.peer.title,
                kind,
                choice.peer.describe(choice.setting) + note,
                report.short_rate(report.rollbacks(times), len(times)),
            )
        )
    grids = "; ".join(
        f"{p.title}: "
        + ", ".join(
            f"{name} {sorted({s[i] for s in p.grid})}" for i, name in enumerate(p.parameters)
        )
        for p in PEERS
    )
    table.notes.append(f"Grids searched: {grids}.")
    table.notes.append(
        "Tuned: the setting with the best detection (share of faulty canaries caught, then "
        "median time) among those with at most as many null false rollbacks as the judge "
        "('tuned to the judge') or as alpha allows ('tuned to alpha'), at least one; chosen "
        "on the same canaries it is shown on, which favours the peers."
    )
    return table


def side_by_side(results: Sequence[CanaryResult], picked: list[tuple[str, report.Choice]]) -> Table:
    harmful = [s for s in SCENARIOS if s.harmful]
    header = ["judge", "null FR", *(s.title for s in harmful), "stalls FR"]
    table = Table("4. Side by side on the same canaries", header)

    def row(label: str, times_of: dict[str, list[float]]) -> None:
        cells = [
            label,
            report.short_rate(report.rollbacks(times_of["null"]), len(times_of["null"])),
        ]
        cells += [report.detection_cell(times_of[s.name]) for s in harmful]
        cells.append(report.short_rate(report.rollbacks(times_of["stall"]), len(times_of["stall"])))
        table.rows.append(cells)

    row("sequential judge", {s.name: report.ours_times(results, s.name) for s in SCENARIOS})
    for kind, choice in picked:
        row(
            f"{choice.peer.title}, {kind}",
            {s.name: report.peer_times(results, choice, s.name) for s in SCENARIOS},
        )
    table.notes.append(
        "FR: false rollbacks. Fault cells: median / p95 time to detect over all canaries of "
        "the fault (a miss counts as never), and the share missed."
    )
    return table


def stress(results: Sequence[CanaryResult], alpha: float) -> Table:
    table = Table(
        f"5. Stress: the sequential judge's false rollbacks as the world changes (alpha {alpha:g})",
        ("world", "null", "severe stalls"),
    )
    main = {s: report.ours_times(results, s) for s in ("null", "stall")}
    table.rows.append(
        (
            "as reported above",
            report.rate_cell(report.rollbacks(main["null"]), len(main["null"])),
            report.rate_cell(report.rollbacks(main["stall"]), len(main["stall"])),
        )
    )
    for variant in STRESS:
        cells = [variant.title]
        for family in ("null", "stall"):
            times = report.ours_times(results, family, variant.name)
            cells.append(report.rate_cell(report.rollbacks(times), len(times)) if times else "-")
        table.rows.append(cells)
    return table


def findings(
    results: Sequence[CanaryResult], picked: list[tuple[str, report.Choice]], alpha: float
) -> list[str]:
    """The run's headline numbers in sentences, computed, for the top of the document."""
    out = []
    null = [r for r in results if r.scenario == "null" and r.variant == "main"]
    for family, label in (
        ("null", "under the null"),
        ("stall", "under severe machine-wide stalls that hit both revisions"),
    ):
        times = report.ours_times(results, family)
        k, n = report.rollbacks(times), len(times)
        low, high = clopper_pearson(k, n) if n else (0.0, 1.0)
        where = "**above alpha**" if low > alpha else "within alpha"
        out.append(
            f"The sequential judge's false-rollback rate {label}: "
            f"{k}/{n} = {100 * k / max(1, n):.2f}% "
            f"(95% CI {100 * low:.2f}-{100 * high:.2f}%) against alpha {100 * alpha:g}%: {where}."
        )
    bands = []
    for low_rps, high_rps in ((1, 10), (10, 100)):
        band = [r for r in null if low_rps <= r.rate / 10 < high_rps]
        k = report.rollbacks(r.ours for r in band)
        bands.append(f"{report.short_rate(k, len(band))} at {low_rps}-{high_rps} rps")
    metrics = ", ".join(f"{m.name} {sum(m.name in r.ours_metrics for r in null)}" for m in METRICS)
    out.append(
        f"Null false rollbacks by the candidate's traffic at 10%: {'; '.join(bands)}. "
        f"By metric (each judged to the end): {metrics}."
    )
    for variant in STRESS:
        cells = []
        for family in ("null", "stall"):
            times = report.ours_times(results, family, variant.name)
            if times:
                cells.append(f"{family} {report.short_rate(report.rollbacks(times), len(times))}")
        out.append(f"Stress, {variant.title}: " + ", ".join(cells) + ".")
    for label in dict.fromkeys(kind for kind, _ in picked if kind != "defaults"):
        tuned = [c for kind, c in picked if kind == label]
        for scenario in SCENARIOS:
            if not scenario.harmful:
                continue
            ours = report.ours_times(results, scenario.name)
            best = min(
                tuned,
                key=lambda c: report.nearest_rank(
                    report.peer_times(results, c, scenario.name), 0.5
                ),
            )
            theirs = report.peer_times(results, best, scenario.name)
            false = report.peer_times(results, best, "null")
            out.append(
                f"{scenario.title}: sequential judge {report.detection_cell(ours)}; fastest peer "
                f"{label} ({best.peer.title}, null false rollbacks "
                f"{report.short_rate(report.rollbacks(false), len(false))}) "
                f"{report.detection_cell(theirs)}."
            )
    return out


# --------------------------------------------------------------------------- main


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.judge_simulation", description=__doc__)
    parser.add_argument("--canaries", type=int, default=2000, help="null canaries (2000)")
    parser.add_argument("--fault-canaries", type=int, default=200, help="canaries per fault (200)")
    parser.add_argument(
        "--stress-canaries", type=int, default=60, help="canaries per stress family (60)"
    )
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 60/20/20 canaries")
    parser.add_argument("--markdown", type=Path, help="also write the report as markdown here")
    args = parser.parse_args(argv)
    if args.quick:
        args.canaries, args.fault_canaries, args.stress_canaries = 60, 20, 20
    return args


def command(args: argparse.Namespace) -> str:
    parts = [
        "python -m bench.judge_simulation",
        f"--canaries {args.canaries}",
        f"--fault-canaries {args.fault_canaries}",
        f"--stress-canaries {args.stress_canaries}",
        f"--seed {args.seed}",
        f"--alpha {args.alpha:g}",
    ]
    return " ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    started = time.monotonic()
    fingerprint = judge_fingerprint()  # before the workers import the judge
    check = check_mann_whitney()
    work = tasks(args)
    print(f"simulating {len(work)} canaries on {args.workers} workers", file=sys.stderr)
    results = simulate_all(work, args.workers)
    results.sort(key=lambda r: (r.scenario, r.variant, r.index))
    null_false = report.rollbacks(report.ours_times(results, "null"))
    null_runs = len(report.ours_times(results, "null"))
    targets = [
        ("tuned to the judge", max(1, null_false)),
        ("tuned to alpha", max(1, math.floor(args.alpha * null_runs))),
    ]
    picked = report.choices(results, targets)
    tables = [
        validity(results, args.alpha),
        detection(results),
        settings(results, picked),
        side_by_side(results, picked),
        stress(results, args.alpha),
    ]
    wall = time.monotonic() - started
    looks = sum(r.looks for r in results)
    judge_time = sum(r.judge_seconds for r in results)
    footer = [
        f"judge source sha256 {fingerprint} ({', '.join(JUDGE_FILES)})",
        f"{check}",
        f"sequential judge: {looks} looks, {1000 * judge_time / max(1, looks):.2f} ms per look "
        "(three metrics)",
        f"wall time {wall / 60:.1f} min on {args.workers} workers",
        f"reproduce: {command(args)}",
    ]
    print("\n\n".join(report.text(t) for t in tables))
    print("\n" + "\n".join(footer))
    if args.markdown is not None:
        from bench.judge_sim.document import document  # noqa: PLC0415

        text = document(
            command(args), tables, footer, findings(results, picked, args.alpha), args.alpha
        )
        args.markdown.write_text(text)
        print(f"wrote {args.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
