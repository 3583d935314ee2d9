"""The modelcanary.io/v1alpha1 API: pydantic models, the single source of truth.

The CRDs in ``crds/`` are generated from these models (``make crds``); the
operator, the CLI's offline ``lint`` and the tests all parse with them.
"""

from modelcanary.api.base import ApiModel, parse_duration
from modelcanary.api.modeldeployment import (
    API_VERSION,
    GROUP,
    VERSION,
    ModelDeployment,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Phase,
    Predictor,
)
from modelcanary.api.rollbackdrill import RollbackDrill, RollbackDrillSpec, RollbackDrillStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "ApiModel",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "Phase",
    "Predictor",
    "RollbackDrill",
    "RollbackDrillSpec",
    "RollbackDrillStatus",
    "parse_duration",
]
