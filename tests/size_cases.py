"""A ModelDeployment grown to its largest: every list full, every number at its widest.

Shared by the unit test of the size bound (``api/size.py``) and the integration
test that stores such an object in the real etcd.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

from modelcanary.analysis import sequential
from modelcanary.api.analysis import Metric
from modelcanary.api.base import ROW_MESSAGE_BYTES, SLICE_VALUE_BYTES
from modelcanary.api.judging import MAX_UNJUDGED_SHOWN
from modelcanary.api.modeldeployment import ModelDeploymentSpec
from modelcanary.api.size import IN_USE_ENTRIES, TEXT_BYTES, events_per_slice
from tests.api_cases import valid_model_deployment

WIDE = -1.2345678901234567e-300
CONDITIONS = ("InvalidSpec", "RollbackReady", "DrillFailed")
STAMP = "2026-11-27T21:00:00.123456Z"


def padded_manifest(*, limit: int, template_bytes: int, name: str = "big") -> dict[str, Any]:
    """The valid manifest with ``limit`` and an annotation of ``template_bytes`` bytes
    on the pod template (what large env lists, sidecars and volumes amount to)."""
    manifest = valid_model_deployment(name)
    spec = manifest["spec"]
    spec["revisionHistoryLimit"] = limit
    spec["predictor"]["template"]["metadata"] = {"annotations": {"padding": "p" * template_bytes}}
    return manifest


def _row(metric: str) -> dict[str, Any]:
    return {
        "metric": metric,
        "candidate": WIDE,
        "stable": WIDE,
        "verdict": "NoData",
        "message": "m" * ROW_MESSAGE_BYTES,
        "slice": "s" * SLICE_VALUE_BYTES,
        "event": "e" * 48,
        "effect": WIDE,
        "effectLow": WIDE,
        "effectHigh": WIDE,
        "eValue": WIDE,
        "threshold": WIDE,
    }


def _judgement(metric: Metric) -> dict[str, Any]:
    assert metric.is_count
    side = "two-sided" if metric.distribution is not None else "greater"
    psi0 = math.log1p(0.1) if metric.latency is not None else 0.0
    grid = sequential.grid_with(psi0, side)
    tests = sequential.components(grid, psi0, side)
    event = {
        "candidateCount": WIDE,
        "stableCount": WIDE,
        "logLikelihood": [WIDE] * len(grid),
        "logE": [WIDE] * len(tests),
        "mantelHaenszel": [WIDE] * 2,
        "judged": [WIDE] * 4,
        "dispersion": WIDE,
        "blocks": 2**31,
    }
    slices = metric.slice.max + 1 if metric.slice is not None else 1
    return {
        "metric": metric.name,
        "test": "t" * 256,
        "looks": 2**31,
        "slices": [
            {
                "slice": f"{index:03d}" + "s" * (SLICE_VALUE_BYTES - 3),
                "candidateTotal": WIDE,
                "stableTotal": WIDE,
                "resets": 2**31,
                "since": STAMP,
                "events": [
                    {"event": f"{e:02d}" + "e" * 46, **event}
                    for e in range(events_per_slice(metric))
                ],
            }
            for index in range(slices)
        ],
        "unjudged": ["u" * SLICE_VALUE_BYTES] * MAX_UNJUDGED_SHOWN,
    }


def worst_status(manifest: dict[str, Any]) -> dict[str, Any]:
    """The status this spec can grow to: a full history of its predictor with evidence,
    the judge's memory full for every count metric, drills and conditions."""
    spec = ModelDeploymentSpec.model_validate(manifest["spec"])
    predictor = manifest["spec"]["predictor"]
    metrics = spec.analysis.metrics if spec.analysis is not None else []
    evidence = [_row(m.name) for m in metrics] + [_row("minSamples")]
    history = [
        {
            "revision": f"{index:010d}",
            "predictor": copy.deepcopy(predictor),
            "outcome": "RolledBack",
            "createdAt": STAMP,
            "finishedAt": STAMP,
            "reason": "r" * TEXT_BYTES,
            "evidence": evidence,
        }
        for index in range(spec.revision_history_limit + IN_USE_ENTRIES)
    ]
    drill = {
        "name": "d" * 253,
        "mode": "live",
        "succeeded": False,
        "revision": "0123456789",
        "startedAt": STAMP,
        "finishedAt": STAMP,
        "timeToReadySeconds": WIDE,
        "timeToRestoreSeconds": WIDE,
        "timeToHealthySeconds": WIDE,
        "reason": "r" * TEXT_BYTES,
    }
    conditions = [
        {
            "type": kind,
            "status": "False",
            "reason": "R" * 64,
            "message": "m" * TEXT_BYTES * 4,
            "lastTransitionTime": STAMP,
            "observedGeneration": 2**31,
        }
        for kind in (*("Ready", "Progressing", "Degraded", "AnalysisHealthy"), *CONDITIONS)
    ]
    return {
        "phase": "Progressing",
        "message": "m" * TEXT_BYTES,
        "observedGeneration": 2**31,
        "stableRevision": "0000000000",
        "canaryRevision": "0000000001",
        "canaryWeight": 50,
        "currentStep": 3,
        "stepStartedAt": STAMP,
        "lastKnownGood": {
            "revision": "0000000000",
            "model": predictor["model"],
            "promotedAt": STAMP,
            "evidence": evidence,
            "note": "n" * TEXT_BYTES,
        },
        "history": history,
        "analysis": {
            "lastRunAt": STAMP,
            "failures": 2**31,
            "noDataSince": STAMP,
            "outageSince": STAMP,
            "outcome": "NoData",
            "reason": "r" * TEXT_BYTES,
            "evaluations": 2**31,
            "weight": 50,
            "results": evidence,
            "judgements": [_judgement(m) for m in metrics if m.is_count],
        },
        "conditions": conditions,
        "lastDrill": drill,
        "drillHistory": [drill] * 20,
    }


def object_bytes(manifest: dict[str, Any], status: dict[str, Any]) -> int:
    """The object as stored: spec, status and kubectl's copy of the spec."""
    stored = copy.deepcopy(manifest)
    stored["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": json.dumps(manifest)
    }
    stored["status"] = status
    return len(json.dumps(stored, separators=(",", ":")))
