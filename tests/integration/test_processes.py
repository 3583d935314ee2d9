"""A component started from a thread that then ends keeps running.

``PR_SET_PDEATHSIG`` fires when the *thread* that forked a child exits. The
harness's pollers and the chaos run start components from their own threads;
those components must live until they are stopped (or the harness dies), not
until the thread that happened to start them ends.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from e2e.harness.processes import ManagedProcess

pytestmark = pytest.mark.integration


def test_a_child_started_by_a_thread_outlives_that_thread(tmp_path: Path) -> None:
    started: list[ManagedProcess] = []

    def start() -> None:
        started.append(ManagedProcess("sleeper", ["sleep", "60"], tmp_path / "sleeper.log").start())

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    (child,) = started
    try:
        # The kernel delivers the parent-death signal as the thread exits; give a
        # killed child ample time to be reaped before looking.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert child.is_running(), "the child died with the thread that started it"
            time.sleep(0.05)
    finally:
        child.stop()
    assert not child.is_running()
