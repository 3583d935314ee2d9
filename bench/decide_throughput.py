"""How long the decision core takes for a thousand ModelDeployments, and their memory.

``make bench-decide``. Each ModelDeployment is mid-canary with a full history
(revisionHistoryLimit entries, each holding a predictor) and an analysis with
three metrics, which is the heaviest status ``decide`` copies and walks. The
per-pass cost bounds how many objects one operator process can drive at a
given interval; Kubernetes and Prometheus round trips come on top.
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from modelcanary.analysis.samples import AnalysisObservation, MetricObservation, Sample
from modelcanary.api.judging import (
    AnalysisStatus,
)
from modelcanary.api.modeldeployment import (
    HistoryEntry,
    KnownGood,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    RevisionOutcome,
)
from modelcanary.rollout.decide import decide
from modelcanary.rollout.observations import Observations, RevisionObservation, RouterObservation

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def spec_for(index: int, version: str) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {
            "predictor": {
                "model": {
                    "name": f"model-{index}",
                    "version": version,
                    "uri": f"s3://m/{index}/{version}",
                },
                "replicas": 3,
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "server",
                                "image": "server:1",
                                "env": [{"name": "A", "value": "1"}],
                            }
                        ]
                    }
                },
            },
            "traffic": {"gatewayAPI": {"httpRoute": f"model-{index}"}},
            "strategy": {
                "steps": [{"setWeight": 10}, {"pause": {"duration": "5m"}}, {"setWeight": 100}],
                "bake": {"duration": "10m"},
            },
            "analysis": {
                "interval": "15s",
                "prometheus": {"address": "http://prometheus:9090"},
                "metrics": [
                    {"name": "error-rate", "query": "e", "max": 0.01},
                    {"name": "latency", "query": "l", "max": 0.5, "maxRelativeToStable": 1.5},
                    {"name": "drift", "query": "d", "maxRelativeToStable": 1.2},
                ],
            },
            "revisionHistoryLimit": 10,
        }
    )


def world_for(index: int) -> tuple[ModelDeploymentSpec, ModelDeploymentStatus, Observations]:
    history = []
    for version in range(10):
        spec = spec_for(index, f"1.{version}.0")
        history.append(
            HistoryEntry(
                revision=spec.predictor.revision(),
                predictor=spec.predictor,
                outcome=RevisionOutcome.PROMOTED,
                created_at=NOW,
            )
        )
    spec = spec_for(index, "2.0.0")
    canary, stable = spec.predictor.revision(), history[0].revision
    history.insert(
        0,
        HistoryEntry(
            revision=canary,
            predictor=spec.predictor,
            outcome=RevisionOutcome.PROGRESSING,
            created_at=NOW,
        ),
    )
    status = ModelDeploymentStatus(
        phase="Progressing",
        stable_revision=stable,
        canary_revision=canary,
        canary_weight=10,
        current_step=1,
        step_started_at=NOW - timedelta(minutes=1),
        last_known_good=KnownGood(
            revision=stable, model=history[1].predictor.model, promoted_at=NOW
        ),
        history=history[:10],
        analysis=AnalysisStatus(last_run_at=NOW - timedelta(seconds=20)),
    )
    observed = Observations(
        revisions={
            canary: RevisionObservation(canary, True, 3, 3, True),
            stable: RevisionObservation(stable, True, 3, 3, True),
        },
        router=RouterObservation(weights={canary: 10, stable: 90}),
        analysis=AnalysisObservation(
            at=NOW,
            prometheus_online=True,
            metrics=tuple(
                MetricObservation(n, Sample.of(0.001), Sample.of(0.001))
                for n in ("error-rate", "latency", "drift")
            ),
        ),
    )
    return spec, status, observed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    worlds = [world_for(i) for i in range(args.objects)]
    gc.collect()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    per_round = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for spec, status, observed in worlds:
            decide(spec, status, observed, NOW, generation=1)
        per_round.append(time.perf_counter() - start)
    best = min(per_round)
    print(f"objects: {args.objects}, rounds: {args.rounds}")
    print(
        f"one pass over all objects: best {best:.3f} s, median {statistics.median(per_round):.3f} s"
    )
    print(f"per decide(): {best / args.objects * 1e3:.2f} ms")
    grown = (after - before) / 1024
    print(f"memory for {args.objects} specs + statuses (max RSS growth): {grown:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
