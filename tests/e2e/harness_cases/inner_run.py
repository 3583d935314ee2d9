"""Cases run by tests/e2e/test_teardown.py in a pytest of their own.

The file name does not match ``test_*.py`` on purpose: the outer run never
collects it; it is only ever passed to an inner pytest by path.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from e2e.harness import ControlPlane, PrometheusServer

pytestmark = pytest.mark.e2e


def test_fails_on_purpose(full_control_plane: ControlPlane, prometheus: PrometheusServer) -> None:
    assert full_control_plane.tier is not None
    assert prometheus.port > 0
    pytest.fail("this test fails on purpose; its processes must still be stopped")


def test_waits_to_be_killed(full_control_plane: ControlPlane, prometheus: PrometheusServer) -> None:
    # Tell the outer test that every component is up, then block until a
    # signal ends this process.
    Path(os.environ["MODELCANARY_INNER_READY"]).write_text(str(os.getpid()))
    threading.Event().wait(240)
    pytest.fail("nobody killed this run")
