"""The ModelDeployment resource: one model, its canary policy, and what is serving.

The spec says what the user wants to serve; the status says what actually
serves (stable and candidate revisions, weights, analysis results, history).
This split, taken from Argo Rollouts and KServe, keeps GitOps honest: the
manifest in git only ever holds the desired model, never the rollout's progress.

Cross-field rules (router exclusivity, rising weights, bounds on every metric)
are written here as CEL once, so the API server refuses a bad manifest at
admission and the operator refuses the same manifest with the same words.

The parts live in modules of their own (``predictor``, ``routing``,
``strategy``, ``mdstatus``); this one assembles the resource, holds the rules
that span parts (autoscaling against the replicas router, the object's size
against etcd's limit) and re-exports the parts, so that the resource is
imported from one place.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from modelcanary.api import size
from modelcanary.api.analysis import Analysis
from modelcanary.api.base import (
    ApiModel,
    cel,
    validations,
)
from modelcanary.api.mdstatus import (  # re-exported: the resource is imported from here
    CONDITION_MESSAGE_BYTES,
    MAX_DRILL_HISTORY,
    MAX_HISTORY,
    ActionRecord,
    Condition,
    DrillSummary,
    HistoryEntry,
    KnownGood,
    ModelDeploymentStatus,
    Phase,
    RevisionOutcome,
)
from modelcanary.api.predictor import (  # re-exported: the resource is imported from here
    Autoscaling,
    AutoscalingMetric,
    ModelRef,
    PodSpecFragment,
    PodTemplate,
    Predictor,
)
from modelcanary.api.routing import (  # re-exported: the resource is imported from here
    GatewayAPIRouter,
    ParentReference,
    ReplicasRouter,
    Traffic,
)
from modelcanary.api.strategy import (  # re-exported: the resource is imported from here
    CRON_PATTERN,
    MAX_STEPS,
    MIN_PROGRESS_DEADLINE,
    Bake,
    DrillMode,
    DrillSchedule,
    Pause,
    RollbackPolicy,
    Step,
    Strategy,
)

GROUP = "modelcanary.io"
VERSION = "v1alpha1"
API_VERSION: Final = "modelcanary.io/v1alpha1"

__all__ = [
    "API_VERSION",
    "AUTOSCALING_WITH_REPLICAS_ROUTER",
    "CONDITION_MESSAGE_BYTES",
    "CRON_PATTERN",
    "GROUP",
    "MAX_DRILL_HISTORY",
    "MAX_HISTORY",
    "MAX_STEPS",
    "MIN_PROGRESS_DEADLINE",
    "VERSION",
    "ActionRecord",
    "Autoscaling",
    "AutoscalingMetric",
    "Bake",
    "Condition",
    "DrillMode",
    "DrillSchedule",
    "DrillSummary",
    "GatewayAPIRouter",
    "HistoryEntry",
    "KnownGood",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "ModelRef",
    "ParentReference",
    "Pause",
    "Phase",
    "PodSpecFragment",
    "PodTemplate",
    "Predictor",
    "ReplicasRouter",
    "RevisionOutcome",
    "RollbackPolicy",
    "Step",
    "Strategy",
    "Traffic",
    "worst_case_bytes",
]


AUTOSCALING_WITH_REPLICAS_ROUTER: Final = (
    "predictor.autoscaling cannot be used with traffic.replicas: that router sets each "
    "revision's replica count to approximate the weights, which an autoscaler would undo; "
    "use traffic.gatewayAPI"
)


class ModelDeploymentSpec(ApiModel):
    """A model to serve, and how to roll out a new version of it."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.predictor.autoscaling) || !has(self.traffic.replicas)",
                AUTOSCALING_WITH_REPLICAS_ROUTER,
                ".predictor.autoscaling",
            )
        )
    )

    predictor: Predictor
    """The desired revision; any change here starts a canary."""

    traffic: Traffic
    """The router that shifts traffic between revisions."""

    strategy: Strategy
    """The canary steps and the bake."""

    analysis: Analysis | None = None
    """Prometheus checks; without them a canary only walks its steps."""

    rollback: RollbackPolicy = Field(default_factory=RollbackPolicy)
    """Automatic rollback on failed analysis."""

    drill: DrillSchedule | None = None
    """Scheduled rollback drills."""

    revision_history_limit: Annotated[int, Field(ge=1, le=MAX_HISTORY)] = 10
    """Revisions kept in status.history (last known-good entries are never dropped first).
    Refused when, with the predictor's size and the metrics, the object could outgrow what
    etcd stores (see docs/concepts.md). Declared last: its check sizes the whole spec."""

    @field_validator("revision_history_limit")
    @classmethod
    def _fits_in_etcd(cls, limit: int, info: ValidationInfo) -> int:
        predictor, analysis = info.data.get("predictor"), info.data.get("analysis")
        if not isinstance(predictor, Predictor):
            return limit  # refused for its own reasons already
        predictor_bytes = len(_compact(predictor.to_dict()))
        written = {
            cls.model_fields[name].alias or name: (
                value.to_dict() if isinstance(value, ApiModel) else value
            )
            for name, value in info.data.items()
            if value is not None
        }
        spec_bytes = len(_compact({**written, "revisionHistoryLimit": limit}))
        why = size.too_large(
            spec_bytes=spec_bytes,
            predictor_bytes=predictor_bytes,
            analysis=analysis if isinstance(analysis, Analysis) else None,
            history_limit=limit,
        )
        if why is not None:
            raise ValueError(why)
        return limit

    @model_validator(mode="after")
    def _one_owner_of_replicas(self) -> ModelDeploymentSpec:
        if self.predictor.autoscaling is not None and self.traffic.replicas is not None:
            raise ValueError(AUTOSCALING_WITH_REPLICAS_ROUTER)
        return self


def _compact(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


def worst_case_bytes(spec: ModelDeploymentSpec) -> int:
    """The largest a ModelDeployment with this spec can grow to (see ``api/size.py``)."""
    return size.worst_case_bytes(
        spec_bytes=len(_compact(spec.to_dict())),
        predictor_bytes=len(_compact(spec.predictor.to_dict())),
        analysis=spec.analysis,
        history_limit=spec.revision_history_limit,
    )


class ModelDeployment(ApiModel):
    """A model served through Prometheus-gated canaries with automatic rollback."""

    api_version: Literal["modelcanary.io/v1alpha1"] = API_VERSION
    kind: Literal["ModelDeployment"] = "ModelDeployment"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus | None = None
