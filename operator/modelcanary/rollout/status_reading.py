"""Reading a status the models refuse: salvage what is readable, act only when that is sound.

The API server checks a status against the CRD's schema, but the schema
cannot say everything the models do (Go's ``date-time`` accepts year 0000,
Python's does not), a CRD from another version may hold other shapes, and a
person may ``kubectl edit --subresource=status``. Before this module, such a
status raised out of every pass: the operator did nothing, said nothing, and
logged a traceback each time.

A status holds two kinds of field, and they are treated differently:

* **Reports** (``message``, ``observedGeneration``, ``conditions``,
  ``analysis``, ``lastAction``, ``lastDrill``) say what a pass saw; the next
  pass writes them again from the world. An unreadable report is reset to
  its default (readable conditions are kept one by one), the pass runs as
  usual and its write repairs the field. Resetting ``analysis`` restarts the
  candidate's evaluation from no evidence, which can delay a promotion but
  never cause one (``minSamples`` and every bound must be met again), the way
  Argo Rollouts starts a fresh AnalysisRun.
* **Memory** (everything else: stable and canary revisions, the step and its
  start, the weight, ``lastKnownGood``, ``history``, ``drillHistory``, pause,
  restore, ``promoteFull``, ``phase``) is what the operator knows of the past
  and cannot rebuild from the cluster. Guessing it could send traffic to the
  wrong revision or restore the wrong predictor, and rewriting it would
  drop the unreadable part (a history entry is the only copy of a predictor
  that can be restored). So when any memory field is unreadable the salvaged
  state is *not sound*: the pass observes nothing, changes no traffic and no
  workload, and writes only its report fields; the unreadable fields stay in
  the object exactly as they were until a person fixes them, and the next
  pass after that is an ordinary one.

Either way an ``InvalidStatus`` condition names each unreadable field (the
way ``InvalidSpec`` names spec fields) with a Warning event, and the first
readable pass after it sets the condition back to False.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from modelcanary.api.modeldeployment import Condition, ModelDeploymentStatus
from modelcanary.api.validation import FieldError, field_errors
from modelcanary.rollout import conditions
from modelcanary.rollout.decision import Decision, Event

CONDITION = "InvalidStatus"
RETRY_SECONDS = 10.0
"""How soon an unsound status is read again: a person's fix does not wake the pass."""

REPORTS = frozenset(
    {"message", "observedGeneration", "conditions", "analysis", "lastAction", "lastDrill"}
)
"""Status fields (by their API names) that a pass rewrites from what it observes."""


@dataclass(frozen=True)
class StatusReading:
    status: ModelDeploymentStatus
    """The status as stored or, when some of it is unreadable, what could be salvaged."""

    problems: tuple[FieldError, ...] = ()
    """Each unreadable field, named as ``status.history[0].createdAt``."""

    unreadable_memory: tuple[str, ...] = ()
    """Top-level memory fields with an unreadable part: acting on the rest is not sound."""

    @property
    def sound(self) -> bool:
        return not self.unreadable_memory


def keep_memory(stored: Mapping[str, Any], status: ModelDeploymentStatus) -> dict[str, Any]:
    """What an unsound pass writes: ``stored`` with only its report fields taken from ``status``.

    The unreadable memory stays exactly as it was, for a person to fix.
    """
    reports = {key: value for key, value in status.to_dict().items() if key in REPORTS}
    return {**{k: v for k, v in stored.items() if k not in REPORTS}, **reports}


def read_status(stored: Mapping[str, Any] | None) -> StatusReading:
    raw = dict(stored or {})
    try:
        return StatusReading(ModelDeploymentStatus.model_validate(raw))
    except ValidationError as error:
        problems = tuple(field_errors(error, "status"))
        unreadable = {str(item["loc"][0]) for item in error.errors() if item["loc"]}
    salvaged = {key: value for key, value in raw.items() if key not in unreadable}
    if "conditions" in unreadable and isinstance(raw.get("conditions"), list):
        salvaged["conditions"] = [c for c in raw["conditions"] if _readable_condition(c)]
    memory = tuple(sorted(key for key in unreadable if key not in REPORTS))
    try:
        status = ModelDeploymentStatus.model_validate(salvaged)
    except ValidationError:  # a field that only fails beside another: keep nothing unsure
        status = ModelDeploymentStatus()
        memory = memory or ("status",)
    return StatusReading(status, problems, memory)


def _readable_condition(raw: Any) -> bool:
    try:
        Condition.model_validate(raw)
    except ValidationError:
        return False
    return True


def note(
    reading: StatusReading, now: datetime, generation: int | None
) -> tuple[ModelDeploymentStatus, tuple[Event, ...]]:
    """The salvaged status with ``InvalidStatus`` set (or cleared after a repair), and its event.

    A sound status with nothing to note is returned as read, not copied: copying
    it was about a tenth of a pass at rest (py-spy, a restart at N=400), for nothing.
    """
    previous = next((c for c in reading.status.conditions if c.type == CONDITION), None)
    if not reading.problems and (previous is None or previous.status != "True"):
        return reading.status, ()
    status = reading.status.deep_copy()
    if not reading.problems:
        if previous is not None and previous.status == "True":
            conditions.set_condition(
                status,
                CONDITION,
                value=False,
                reason="Readable",
                message="",
                now=now,
                generation=generation,
            )
        return status, ()
    message = _message(reading.problems, sound=reading.sound)
    conditions.set_condition(
        status,
        CONDITION,
        value=True,
        reason="Unreadable" if not reading.sound else "Repaired",
        message=message,
        now=now,
        generation=generation,
    )
    repeated = previous is not None and previous.status == "True" and previous.message == message
    return status, () if repeated else (Event("Warning", CONDITION, message),)


def decide_unsound(reading: StatusReading, now: datetime, generation: int | None) -> Decision:
    """A status whose memory cannot be read: say so, and touch nothing."""
    status, events = note(reading, now, generation)
    status.message = f"status unreadable, nothing is changed: {_fields(reading.problems)}"
    return Decision(status, (), events, RETRY_SECONDS)


def _fields(problems: Sequence[FieldError]) -> str:
    return "; ".join(str(problem) for problem in problems)


def _message(problems: Sequence[FieldError], *, sound: bool) -> str:
    if sound:
        return f"reset to be written again by the next pass: {_fields(problems)}"
    return (
        f"{_fields(problems)}; traffic and workloads stay as they are until these fields"
        " are fixed (kubectl edit --subresource=status)"
    )
