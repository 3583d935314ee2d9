"""The working state of one decision pass.

``decide`` copies the status once, and the step functions in ``canary``,
``pause``, ``analysis`` and ``actions`` change that copy and append actions and
events here. Nothing outside the pass sees it until ``decide`` returns, which
keeps each step function small while the decision as a whole stays one pure
function of its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from modelcanary.api.modeldeployment import (
    HistoryEntry,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Predictor,
    RevisionOutcome,
)
from modelcanary.rollout.decision import (
    Action,
    Decision,
    EnsureRevision,
    Event,
    Role,
    ScaleRevision,
    SetWeights,
)
from modelcanary.rollout.granularity import effective_weight
from modelcanary.rollout.observations import Observations

POLL_SECONDS = 2.0
IDLE_SECONDS = 30.0
FAILED_OUTCOMES = (RevisionOutcome.ROLLED_BACK, RevisionOutcome.ABORTED)


@dataclass
class Pass:
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus
    observed: Observations
    now: datetime
    desired: str
    actions: list[Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    requeue_after: float = IDLE_SECONDS

    # -- bookkeeping ---------------------------------------------------------------

    def emit(self, action: Action) -> None:
        if action not in self.actions:
            self.actions.append(action)

    def event(self, reason: str, message: str, *, warning: bool = False) -> None:
        self.events.append(Event("Warning" if warning else "Normal", reason, message))

    def requeue(self, seconds: float) -> None:
        self.requeue_after = max(0.1, min(self.requeue_after, seconds))

    def decision(self) -> Decision:
        return Decision(self.status, tuple(self.actions), tuple(self.events), self.requeue_after)

    # -- the router ------------------------------------------------------------------

    @property
    def router_owns_replicas(self) -> bool:
        return self.spec.traffic.replicas is not None

    def expected_canary_weight(self, weight: int) -> int:
        """The weight the router will read back for a requested one."""
        if self.router_owns_replicas:
            return effective_weight(self.spec.predictor.replicas, weight)
        return weight

    def weights_read_back(self) -> dict[str, int] | None:
        weights = self.observed.router.weights
        return {rev: w for rev, w in weights.items() if w} if weights is not None else None

    def route(self, weights: dict[str, int]) -> bool:
        """Ask for ``weights`` unless the router already reads them back; True once it does."""
        wanted = {revision: weight for revision, weight in weights.items() if weight}
        if self.weights_read_back() == wanted:
            return True
        self.emit(SetWeights.of(weights))
        self.requeue(POLL_SECONDS)
        return False

    def confirmed_canary_weight(self, canary: str, stable: str | None, weight: int) -> bool:
        expected = self.expected_canary_weight(weight)
        wanted = {canary: expected}
        if stable is not None and expected < 100:
            wanted[stable] = 100 - expected
        return self.weights_read_back() == {rev: w for rev, w in wanted.items() if w}

    # -- workloads -------------------------------------------------------------------

    def replicas_for(self, predictor: Predictor) -> int | None:
        return None if self.router_owns_replicas else predictor.replicas

    def ensure(
        self, revision: str, predictor: Predictor, role: Role, *, force: bool = False
    ) -> None:
        """Ensure a revision's workload when it is missing or mis-scaled (or ``force``)."""
        replicas = self.replicas_for(predictor)
        seen = self.observed.revisions.get(revision)
        missing = seen is None or not seen.exists
        if (
            force
            or missing
            or (replicas is not None and seen is not None and seen.desired_replicas != replicas)
        ):
            self.emit(EnsureRevision(revision, predictor, role, replicas))
            self.requeue(POLL_SECONDS)

    def ensure_known(self, revision: str, role: Role) -> None:
        """Ensure a revision whose predictor the history holds (skipped if it does not)."""
        try:
            predictor = self.predictor_of(revision)
        except LookupError:
            return
        self.ensure(revision, predictor, role)

    def available(self, revision: str) -> bool:
        seen = self.observed.revisions.get(revision)
        return seen is not None and seen.exists and seen.available

    def scale_down_others(self, keep: set[str]) -> None:
        for revision, seen in self.observed.revisions.items():
            if revision not in keep and seen.exists and seen.desired_replicas > 0:
                self.emit(ScaleRevision(revision, 0))

    # -- history ---------------------------------------------------------------------

    def entry(self, revision: str | None) -> HistoryEntry | None:
        if revision is None:
            return None
        return next((e for e in self.status.history if e.revision == revision), None)

    def predictor_of(self, revision: str) -> Predictor:
        if revision == self.desired:
            return self.spec.predictor
        entry = self.entry(revision)
        if entry is None:
            raise LookupError(f"revision {revision} is not in the history")
        return entry.predictor

    def record(
        self, revision: str, outcome: RevisionOutcome, reason: str = "", **fields: object
    ) -> HistoryEntry:
        """Set a revision's history entry (creating it, newest first)."""
        entry = self.entry(revision)
        if entry is None:
            entry = HistoryEntry(
                revision=revision,
                predictor=self.predictor_of(revision),
                outcome=outcome,
                created_at=self.now,
            )
            self.status.history.insert(0, entry)
        entry.outcome = outcome
        if reason:
            entry.reason = reason
        for name, value in fields.items():
            setattr(entry, name, value)
        return entry

    def failed_before(self, revision: str) -> HistoryEntry | None:
        entry = self.entry(revision)
        return entry if entry is not None and entry.outcome in FAILED_OUTCOMES else None
