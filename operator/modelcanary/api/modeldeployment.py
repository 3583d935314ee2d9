"""The ModelDeployment resource: one model, its canary policy, and what is serving.

The spec says what the user wants to serve; the status says what actually
serves (stable and candidate revisions, weights, analysis results, history).
This split, taken from Argo Rollouts and KServe, keeps GitOps honest: the
manifest in git only ever holds the desired model, never the rollout's progress.

Cross-field rules (router exclusivity, rising weights, bounds on every metric)
are written here as CEL once, so the API server refuses a bad manifest at
admission and the operator refuses the same manifest with the same words.
"""

from __future__ import annotations

import enum
import hashlib
import json
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import ConfigDict, Field, model_validator

from modelcanary.api.analysis import Analysis
from modelcanary.api.base import (
    DNS_LABEL_PATTERN,
    LABEL_VALUE_PATTERN,
    ApiModel,
    Duration,
    cel,
    validations,
)
from modelcanary.api.judging import AnalysisStatus, MetricResult

GROUP = "modelcanary.io"
VERSION = "v1alpha1"
API_VERSION: Final = "modelcanary.io/v1alpha1"
MAX_STEPS = 32
MAX_HISTORY = 100
MAX_DRILL_HISTORY = 20


# --------------------------------------------------------------------------- predictor


class ModelRef(ApiModel):
    """Which model artifact a revision serves."""

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=LABEL_VALUE_PATTERN)]
    """The model's name, used in labels and PromQL templates ({{model}})."""

    version: Annotated[str, Field(min_length=1, max_length=63, pattern=LABEL_VALUE_PATTERN)]
    """The model version, e.g. 1.5.0 ({{version}} in PromQL templates)."""

    uri: Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^[^\s\"'\\]+$")]
    """Where the model artifact lives, e.g. s3://models/fraud/1.5.0; injected as MODEL_URI."""


class PodSpecFragment(ApiModel):
    """The pod spec of the model server. Any PodSpec field is accepted."""

    model_config = ConfigDict(extra="allow")

    containers: Annotated[
        list[dict[str, Any]],
        Field(
            min_length=1, max_length=16, json_schema_extra={"x-modelcanary-free-form-items": True}
        ),
    ]
    """The pod's containers; the first one is the model server and receives MODEL_URI,
    MODEL_VERSION and MODEL_NAME in its environment."""


class PodTemplate(ApiModel):
    """A PodTemplateSpec for the model server, as in a Deployment."""

    metadata: Annotated[
        dict[str, Any] | None, Field(json_schema_extra={"x-modelcanary-free-form": True})
    ] = None
    """Labels and annotations added to every pod of every revision."""

    spec: PodSpecFragment
    """The pod spec."""


class Predictor(ApiModel):
    """The desired revision. Any change here starts a canary: the revision is a hash of it."""

    model: ModelRef
    """The model artifact to serve."""

    replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    """Pods per revision when it takes all the traffic."""

    template: PodTemplate
    """The model server's pod template."""

    def revision(self) -> str:
        """A short, stable hash of this predictor: equal specs, equal revisions."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:10]


# --------------------------------------------------------------------------- traffic


class ParentReference(ApiModel):
    """A Gateway API parentRef: the Gateway (and listener) the HTTPRoute attaches to."""

    group: Annotated[str, Field(max_length=253)] | None = None
    """API group of the parent; gateway.networking.k8s.io when unset."""

    kind: Annotated[str, Field(max_length=63)] | None = None
    """Kind of the parent; Gateway when unset."""

    namespace: Annotated[str, Field(max_length=63, pattern=DNS_LABEL_PATTERN)] | None = None
    """Namespace of the parent; the route's namespace when unset."""

    name: Annotated[str, Field(min_length=1, max_length=253)]
    """Name of the parent."""

    section_name: Annotated[str, Field(max_length=253)] | None = None
    """A listener of the parent, by name."""

    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    """A listener of the parent, by port."""


class GatewayAPIRouter(ApiModel):
    """Shift traffic by the backend weights of a Gateway API HTTPRoute (v1)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!self.create || (has(self.parentRefs) && size(self.parentRefs) > 0)",
                "parentRefs are required when create is true",
                ".parentRefs",
            )
        )
    )

    http_route: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_LABEL_PATTERN)]
    """Name of the HTTPRoute in the ModelDeployment's namespace."""

    create: bool = False
    """Create the HTTPRoute if it does not exist. When false, the route must exist and
    the operator manages only the backendRefs of its first rule, restoring them on deletion."""

    parent_refs: Annotated[list[ParentReference], Field(max_length=32)] | None = None
    """The Gateways the route attaches to; used only when the operator creates the route."""

    @model_validator(mode="after")
    def _parents_to_create_with(self) -> GatewayAPIRouter:
        if self.create and not self.parent_refs:
            raise ValueError("parentRefs are required when create is true")
        return self


class ReplicasRouter(ApiModel):
    """Approximate weights with replica counts behind one Service; no mesh needed.

    With N replicas in total, weights move in steps of 100/N percent, and the real
    split also depends on the clients' connection reuse. Use it where no Gateway runs.
    """

    service: (
        Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)] | None
    ) = None
    """The Service that selects every revision's pods; the ModelDeployment's name when unset."""


class Traffic(ApiModel):
    """How traffic reaches the model, and which router shifts it between revisions."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "[has(self.gatewayAPI), has(self.replicas)].filter(x, x).size() == 1",
                "exactly one router must be set: gatewayAPI or replicas",
            )
        )
    )

    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    """The model server's HTTP port (also the port of each revision's Service)."""

    gateway_api: Annotated[GatewayAPIRouter | None, Field(alias="gatewayAPI")] = None
    """Route with a Gateway API HTTPRoute."""

    replicas: ReplicasRouter | None = None
    """Route by replica counts behind one Service."""

    def router_kind(self) -> Literal["gatewayAPI", "replicas"]:
        if self.gateway_api is not None:
            return "gatewayAPI"
        return "replicas"

    @model_validator(mode="after")
    def _exactly_one_router(self) -> Traffic:
        if (self.gateway_api is None) == (self.replicas is None):
            raise ValueError("exactly one router must be set: gatewayAPI or replicas")
        return self


# --------------------------------------------------------------------------- strategy


class Pause(ApiModel):
    """Wait before the next step."""

    duration: Duration | None = None
    """How long to wait; without it, wait until a person resumes or promotes."""


class Step(ApiModel):
    """One canary step: set a weight, or pause."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.setWeight) != has(self.pause)",
                "a step sets exactly one of setWeight or pause",
            )
        )
    )

    set_weight: Annotated[int, Field(ge=0, le=100)] | None = None
    """Percent of traffic to send to the candidate."""

    pause: Pause | None = None
    """Wait, for a duration or until resumed."""

    @model_validator(mode="after")
    def _exactly_one_action(self) -> Step:
        if (self.set_weight is None) == (self.pause is None):
            raise ValueError("a step sets exactly one of setWeight or pause")
        return self


_WEIGHTS = "self.steps.filter(s, has(s.setWeight)).map(s, s.setWeight)"


class Bake(ApiModel):
    """After 100%: keep analysing while the previous revision stays warm."""

    duration: Duration = "0s"
    """How long the candidate must stay healthy at 100% before it is promoted."""


class Strategy(ApiModel):
    """The canary steps."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.steps.exists(s, has(s.setWeight))",
                "at least one step must set a weight",
                ".steps",
            ),
            cel(
                f"!self.steps.exists(s, has(s.setWeight)) || {_WEIGHTS}.isSorted()",
                "setWeight values must not decrease from one step to the next",
                ".steps",
            ),
            cel(
                f"!self.steps.exists(s, has(s.setWeight)) || {_WEIGHTS}.max() == 100",
                "the last setWeight must be 100",
                ".steps",
            ),
        )
    )

    steps: Annotated[list[Step], Field(min_length=1, max_length=MAX_STEPS)]
    """Steps in order; weights never decrease and the last weight is 100."""

    bake: Bake = Field(default_factory=Bake)
    """The soak at 100% before promotion."""

    def weights(self) -> list[int]:
        return [step.set_weight for step in self.steps if step.set_weight is not None]

    @model_validator(mode="after")
    def _weights_rise_to_100(self) -> Strategy:
        weights = self.weights()
        if not weights:
            raise ValueError("at least one step must set a weight")
        if weights != sorted(weights):
            raise ValueError("setWeight values must not decrease from one step to the next")
        if weights[-1] != 100:
            raise ValueError("the last setWeight must be 100")
        return self


# --------------------------------------------------------------------------- rollback and drills


class RollbackPolicy(ApiModel):
    """What happens to a failing candidate."""

    automatic: bool = True
    """Send all traffic back to the last known-good revision when analysis fails."""


class DrillMode(enum.StrEnum):
    """How far a rollback drill goes."""

    VERIFY = "verify"
    WARM = "warm"
    LIVE = "live"


CRON_PATTERN = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$"


class DrillSchedule(ApiModel):
    """Rehearse the rollback on a schedule."""

    schedule: Annotated[str, Field(min_length=1, max_length=128, pattern=CRON_PATTERN)]
    """A cron schedule (five fields, or @daily and friends), in the CronJob's time zone."""

    mode: DrillMode = DrillMode.VERIFY
    """verify: last known-good can start at 0%; warm: also takes a small slice of traffic;
    live: all traffic flips to it and back."""

    warm_weight: Annotated[int, Field(ge=1, le=50)] = 5
    """Percent of traffic a warm drill sends to the last known-good revision."""

    history_limit: Annotated[int, Field(ge=1, le=100)] = 5
    """RollbackDrill objects kept per ModelDeployment; older ones are pruned."""

    suspend: bool = False
    """Stop scheduling drills without losing the schedule."""


class ModelDeploymentSpec(ApiModel):
    """A model to serve, and how to roll out a new version of it."""

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

    revision_history_limit: Annotated[int, Field(ge=1, le=MAX_HISTORY)] = 10
    """Revisions kept in status.history (last known-good entries are never dropped first)."""

    drill: DrillSchedule | None = None
    """Scheduled rollback drills."""


# --------------------------------------------------------------------------- status


class Phase(enum.StrEnum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    BAKING = "Baking"
    HEALTHY = "Healthy"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"
    INVALID = "Invalid"


class Condition(ApiModel):
    """A standard Kubernetes condition."""

    type: Annotated[str, Field(min_length=1, max_length=316)]
    """Ready, Progressing, Degraded, AnalysisHealthy, InvalidSpec, InvalidStatus or
    RollbackReady."""

    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""

    reason: Annotated[str, Field(max_length=1024)] = ""
    """A CamelCase reason."""

    message: Annotated[str, Field(max_length=32768)] = ""
    """A human-readable explanation."""

    last_transition_time: datetime | None = None
    """When the status last changed."""

    observed_generation: int | None = None
    """The spec generation the condition was computed for."""


class KnownGood(ApiModel):
    """A revision that passed analysis, with the evidence that made it good."""

    revision: str
    """The revision hash."""

    model: ModelRef
    """The model it serves."""

    promoted_at: datetime
    """When it became stable."""

    evidence: list[MetricResult] = Field(default_factory=list)
    """Metric values at promotion; empty for a first revision, which had nothing to compare with."""

    note: str = ""
    """Why the evidence is what it is (e.g. first revision, promoted by hand)."""


class RevisionOutcome(enum.StrEnum):
    PROGRESSING = "Progressing"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"
    SUPERSEDED = "Superseded"


class HistoryEntry(ApiModel):
    """A revision that was rolled out, with its full predictor so it can be restored."""

    revision: str
    """The revision hash."""

    predictor: Predictor
    """The predictor exactly as it was."""

    outcome: RevisionOutcome
    """How its rollout ended."""

    created_at: datetime
    """When its canary started."""

    finished_at: datetime | None = None
    """When its rollout ended."""

    reason: str = ""
    """Why it ended that way, e.g. the metric, value and bound that failed."""

    evidence: list[MetricResult] = Field(default_factory=list)
    """Metric values when it was promoted or rolled back."""


class DrillSummary(ApiModel):
    """One finished rollback drill of this ModelDeployment."""

    name: str
    """The RollbackDrill object (it may since have been pruned)."""

    mode: DrillMode
    """verify, warm or live."""

    succeeded: bool
    """Whether the drill passed."""

    revision: str | None = None
    """The revision rehearsed as the rollback target."""

    started_at: datetime
    """When it started."""

    finished_at: datetime | None = None
    """When it ended."""

    time_to_ready_seconds: float | None = None
    """Seconds until the last known-good revision was Ready."""

    time_to_restore_seconds: float | None = None
    """Seconds until the router confirmed all traffic on the rehearsed revision (live drills)."""

    time_to_healthy_seconds: float | None = None
    """Seconds from the first traffic shift until its analysis passed (warm and live drills)."""

    reason: str = ""
    """Why it failed."""


class ActionRecord(ApiModel):
    """The latest manual action (annotation modelcanary.io/action) and what came of it."""

    id: str
    """The request's id; a request is carried out once per id."""

    action: str
    """promote, promote-full, abort, pause, resume, retry or rollback."""

    revision: str | None = None
    """The target of a rollback."""

    accepted: bool
    """Whether the action was carried out."""

    message: str = ""
    """What was done, or why the action does not apply now."""

    at: datetime
    """When the operator handled it."""


class ModelDeploymentStatus(ApiModel):
    """What is actually serving, and how the rollout stands."""

    phase: Phase = Phase.PENDING
    """Pending, Progressing, Paused, Baking, Healthy, RolledBack, Failed or Invalid."""

    message: str = ""
    """A one-line summary for people."""

    observed_generation: int | None = None
    """The spec generation this status describes."""

    stable_revision: str | None = None
    """The revision serving the traffic not sent to the candidate."""

    canary_revision: str | None = None
    """The candidate, while a canary runs."""

    canary_weight: Annotated[int, Field(ge=0, le=100)] = 0
    """Percent of traffic the router confirmed for the candidate."""

    current_step: int | None = None
    """Index of the step being carried out."""

    step_started_at: datetime | None = None
    """When the current step started."""

    last_known_good: KnownGood | None = None
    """The revision to return to when a candidate fails."""

    history: Annotated[list[HistoryEntry], Field(max_length=MAX_HISTORY)] = Field(
        default_factory=list
    )
    """Past revisions, newest first, bounded by revisionHistoryLimit."""

    analysis: AnalysisStatus | None = None
    """The latest analysis of the candidate."""

    conditions: list[Condition] = Field(default_factory=list)
    """Ready, Progressing, Degraded, AnalysisHealthy, InvalidSpec, InvalidStatus and
    RollbackReady."""

    last_drill: DrillSummary | None = None
    """The latest finished rollback drill."""

    drill_history: Annotated[list[DrillSummary], Field(max_length=MAX_DRILL_HISTORY)] = Field(
        default_factory=list
    )
    """Finished drills, newest first; kept here after their RollbackDrill objects are pruned."""

    paused: bool = False
    """A person paused the rollout; steps wait, analysis (and rollback) go on."""

    restoring: str | None = None
    """A revision being restored to 100% by rollback --to."""

    promote_full: bool = False
    """promote --full was asked for: go to 100% and promote, skipping steps and the bake."""

    last_action: ActionRecord | None = None
    """The latest manual action."""


class ModelDeployment(ApiModel):
    """A model served through Prometheus-gated canaries with automatic rollback."""

    api_version: Literal["modelcanary.io/v1alpha1"] = API_VERSION
    kind: Literal["ModelDeployment"] = "ModelDeployment"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus | None = None
