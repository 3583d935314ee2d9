"""The RollbackDrills of one ModelDeployment, as a pass observes them.

Shared by the ModelDeployment's pass (``reconcile``: is a drill running, which
have ended) and the drill's (``drill_executor``: does another drill go
first). Read from the view when the operator has one; one small LIST by the
model's label otherwise.
"""

from __future__ import annotations

from typing import Any

import kr8s
import kr8s.asyncio

from modelcanary.api.names import LABEL_MODEL, model_label
from modelcanary.api.rollbackdrill import DrillPhase, RollbackDrillSpec, RollbackDrillStatus
from modelcanary.drills.ending import FINISHED, summary_of
from modelcanary.rollout.observations import ActiveDrill, FinishedDrill
from modelcanary.view.store import DRILL
from modelcanary.view.watch import View, api_list

_NOT_FOUND = 404


async def drills_of(
    api: kr8s.asyncio.Api, namespace: str, md_name: str, *, view: View | None = None
) -> list[dict[str, Any]]:
    """The RollbackDrills of one ModelDeployment, by label.

    The drill executor labels a drill made by hand on its first pass, before
    it can run, so a running or finished drill always carries the label.
    """
    if view is not None:
        drills = await view.of_model(DRILL, namespace, md_name)
    else:
        drills = await api_list(api, DRILL, namespace, {LABEL_MODEL: model_label(md_name)})
    return [raw for raw in drills if (raw.get("spec") or {}).get("modelDeployment") == md_name]


async def observe_drills(
    api: kr8s.asyncio.Api, namespace: str, md_name: str, *, view: View | None = None
) -> tuple[ActiveDrill | None, tuple[FinishedDrill, ...]]:
    """The running drill of one ModelDeployment, if any, and those that have ended.

    A drill still Pending counts as running, with no target yet: its first pass
    starts the target's Deployment before it writes Running, and a pass of
    the ModelDeployment in between (now woken by that Deployment's watch
    event, no longer once in 30 s) would otherwise scale it straight back to
    zero. The drill's pass moves it on, or refuses it, within a second.
    """
    try:
        drills = await drills_of(api, namespace, md_name, view=view)
    except kr8s.ServerError as error:
        response = error.response
        if response is not None and response.status_code == _NOT_FOUND:
            return None, ()  # the RollbackDrill CRD is not installed: no drill can run
        raise
    running: ActiveDrill | None = None
    finished: list[FinishedDrill] = []
    for raw in drills:
        name = raw["metadata"]["name"]
        try:
            spec = RollbackDrillSpec.model_validate(raw.get("spec") or {})
            status = RollbackDrillStatus.model_validate(raw.get("status") or {})
        except ValueError:
            continue  # admission keeps these out; an unreadable drill is not ours to judge
        if status.phase is DrillPhase.RUNNING:
            target = status.revisions.last_known_good if status.revisions else None
            running = ActiveDrill(name=name, target=target)
        elif status.phase is DrillPhase.PENDING and running is None:
            running = ActiveDrill(name=name, target=None)
        elif status.phase in FINISHED:
            finished.append(FinishedDrill(name, summary_of(name, spec, status), status.finished_at))
    return running, tuple(finished)
