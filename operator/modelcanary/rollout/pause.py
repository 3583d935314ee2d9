"""Pause steps: timed, or indefinite until a person promotes or resumes.

A timed pause counts from the moment its step began. Holds (no data, an
outage) and a person's ``pause`` stop the clock from *advancing the step*,
not from running: when the hold lifts after the duration has passed, the
step is done at once.
"""

from __future__ import annotations

from modelcanary.api.base import parse_duration
from modelcanary.api.modeldeployment import (
    Pause,
    Phase,
)
from modelcanary.rollout.state import Pass


def pause_step(work: Pass, pause: Pause | None) -> bool:
    """True when the pause is over and the next step may begin."""
    status = work.status
    if pause is None or pause.duration is None:
        status.phase = Phase.PAUSED
        status.message = f"paused at step {status.current_step} until promoted or resumed"
        return False
    started = status.step_started_at or work.now
    remaining = parse_duration(pause.duration) - (work.now - started)
    if remaining.total_seconds() > 0:
        status.phase = Phase.PROGRESSING
        status.message = f"pausing {pause.duration} at {status.canary_weight}%"
        work.requeue(remaining.total_seconds())
        return False
    return True
