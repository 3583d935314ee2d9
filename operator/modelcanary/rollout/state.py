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
from modelcanary.rollout import autoscaling
from modelcanary.rollout.decision import (
    Action,
    Decision,
    DeleteAutoscaler,
    EnsureRevision,
    Event,
    Role,
    ScaleRevision,
    SetWeights,
)
from modelcanary.rollout.granularity import effective_weight
from modelcanary.rollout.observations import Observations

POLL_SECONDS = 2.0
IDLE_SECONDS = 1800.0
"""Nothing is due. The operator then waits for a watch event (its view of the
Deployments, routes, drills and HPAs wakes the pass when one changes); this
is only a safety resync, and such a pass reads the view, not the API server.
Anything time itself triggers (a pause, an analysis, a deadline, a window)
asks for its own, shorter, requeue. Half an hour, not minutes: at 1,000
objects a 5-minute resync was 200 passes a minute at rest, which would be a
fifth of a core at 10,000 (controller-runtime's default is 10 hours)."""
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
        """The replica count the operator owns, or None where a router or an HPA owns it."""
        if self.router_owns_replicas or predictor.autoscaling is not None:
            return None
        return predictor.replicas

    def ensure(
        self, revision: str, predictor: Predictor, role: Role, *, force: bool = False
    ) -> None:
        """Ensure a revision's workload when it is missing or mis-scaled (or ``force``)."""
        if predictor.autoscaling is not None:
            self._ensure_autoscaled(revision, predictor, role, force=force)
            return
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

    def _ensure_autoscaled(
        self, revision: str, predictor: Predictor, role: Role, *, force: bool
    ) -> None:
        """Keep the revision's HPA at its floor; start the Deployment only when it is down."""
        floor = self.autoscaler_floor(revision, predictor, role)
        seen = self.observed.revisions.get(revision)
        down = seen is None or not seen.exists or seen.desired_replicas == 0
        assert predictor.autoscaling is not None
        start = (
            autoscaling.start_replicas(predictor.autoscaling, predictor.replicas, floor, role)
            if down
            else None
        )
        if force or down or seen is None or seen.autoscaler_min_replicas != floor:
            self.emit(EnsureRevision(revision, predictor, role, start, floor))
            self.requeue(POLL_SECONDS)

    def autoscaler_floor(
        self, revision: str, predictor: Predictor, role: Role, weight: int | None = None
    ) -> int:
        """The HPA minReplicas an autoscaled revision needs now (see rollout.autoscaling)."""
        assert predictor.autoscaling is not None
        seen = self.observed.revisions.get(revision)
        if role == "stable":
            return autoscaling.stable_floor(predictor.autoscaling, seen)
        stable = self.status.stable_revision
        stable_seen = self.observed.revisions.get(stable) if stable is not None else None
        return autoscaling.canary_floor(
            predictor.autoscaling,
            weight=self.weight_ahead() if weight is None else weight,
            stable_replicas=stable_seen.desired_replicas if stable_seen is not None else None,
            seen=seen,
        )

    def weight_ahead(self) -> int:
        """The candidate's weight once the step being carried out is done."""
        status = self.status
        steps = self.spec.strategy.steps
        index = status.current_step or 0
        if status.promote_full or index >= len(steps):
            return 100
        return max(status.canary_weight, steps[index].set_weight or 0)

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
            autoscaled = seen.autoscaler_min_replicas is not None
            if revision not in keep and seen.exists and (seen.desired_replicas > 0 or autoscaled):
                self.retire(revision)

    def retire(self, revision: str) -> None:
        """Scale a revision to zero, its HPA removed first so nothing scales it back."""
        seen = self.observed.revisions.get(revision)
        if seen is not None and seen.autoscaler_min_replicas is not None:
            self.emit(DeleteAutoscaler(revision))
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
