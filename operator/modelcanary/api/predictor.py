"""The predictor: the model and the pods that serve it; its hash is the revision.

Everything that makes one revision differ from another lives here, and only
here: any change to it starts a canary, and a history entry keeps it whole so
that any revision can be restored exactly.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from modelcanary.api.base import (
    LABEL_VALUE_PATTERN,
    ApiModel,
    cel,
    validations,
)


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


class AutoscalingMetric(ApiModel):
    """One autoscaling/v2 MetricSpec, passed to the HorizontalPodAutoscaler as written.

    Only its type is checked here; the API server checks the rest when the
    operator creates the HPA, so the full MetricSpec stays available as is.
    """

    model_config = ConfigDict(extra="allow")

    type: Literal["Resource", "Pods", "Object", "External", "ContainerResource"]
    """Resource, Pods, Object, External or ContainerResource, with its matching field
    (e.g. resource: {name: cpu, target: {type: Utilization, averageUtilization: 70}})."""


class Autoscaling(ApiModel):
    """Let a HorizontalPodAutoscaler (autoscaling/v2) size each revision.

    The operator then owns one HPA per revision and stops writing the revision's
    replica count, so it never fights the autoscaler.
    """

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.minReplicas <= self.maxReplicas",
                "minReplicas must not be greater than maxReplicas",
                ".minReplicas",
            )
        )
    )

    min_replicas: Annotated[int, Field(ge=1, le=1000)]
    """The fewest pods of a revision taking all the traffic. During a canary the
    candidate's minimum is raised with its weight (see the concepts guide)."""

    max_replicas: Annotated[int, Field(ge=1, le=1000)]
    """The most pods of any one revision."""

    metrics: Annotated[list[AutoscalingMetric], Field(max_length=16)] | None = None
    """autoscaling/v2 MetricSpecs; without them the HPA uses its default (80% CPU)."""

    @model_validator(mode="after")
    def _min_below_max(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must not be greater than maxReplicas")
        return self


class Predictor(ApiModel):
    """The desired revision. Any change here starts a canary: the revision is a hash of it."""

    model: ModelRef
    """The model artifact to serve."""

    replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    """Pods per revision when it takes all the traffic. With autoscaling, only the count
    a serving revision starts with (within minReplicas and maxReplicas); its HPA
    decides from then on."""

    template: PodTemplate
    """The model server's pod template."""

    autoscaling: Autoscaling | None = None
    """Size each revision with its own HorizontalPodAutoscaler instead of replicas.
    Left out, a predictor hashes to the same revision as before the field existed."""

    def revision(self) -> str:
        """A short, stable hash of this predictor: equal specs, equal revisions."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:10]
