"""The canary world most end-to-end tests stand on, set up in one place.

A test module that needs a revision to misbehave overrides ``scenario_faults``
(pytest lets a module's fixture replace a conftest one of the same name).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import kr8s
import pytest

from e2e.dataplane.revisions import FaultsFor
from e2e.dataplane.scenario import CanaryScenario
from e2e.harness import ControlPlane, PrometheusServer


@pytest.fixture
def scenario_faults() -> FaultsFor | None:
    """What each model version does wrong: nothing, unless a module says otherwise."""
    return None


@pytest.fixture
def scenario(
    full_control_plane: ControlPlane,
    k8s: kr8s.Api,
    namespace: str,
    prometheus: PrometheusServer,
    tmp_path: Path,
    *,
    scenario_faults: FaultsFor | None,
) -> Iterator[CanaryScenario]:
    with CanaryScenario(
        full_control_plane, k8s, namespace, prometheus, tmp_path, faults_for=scenario_faults
    ) as world:
        yield world
