"""kopf wiring: with ``kopf_tuning`` (kopf's per-event costs), the only package that imports kopf.

Importing it registers every handler with kopf, as ``run`` does. One module
per concern, as the rest of the operator:

* ``startup``: kopf's settings, the API client and its rate limit, the
  label-selected watches that feed the view, the pass slots; both modes'.
* ``models``: one daemon per ModelDeployment that runs passes in a loop, the
  event handler that wakes it on a person's change, the finalizer.
* ``drills``: one daemon per unfinished RollbackDrill, and the CronJob that
  ``spec.drill.schedule`` asks for.
* ``sharded``: ``run --shards N`` (docs/sharding.md), where kopf gets the
  :data:`SHARDED` registry (log-in, start-up, clean-up) and the passes run in
  the loops of the replica that owns each object's shard.
* ``state``: what those share within one process (each daemon's wake-up,
  the watches' routes to it, sharded mode's runtime).
"""

from __future__ import annotations

from modelcanary.handlers import drills, models, sharded, startup, state
from modelcanary.handlers.startup import SHARDED, configure

__all__ = ["SHARDED", "configure", "drills", "models", "sharded", "startup", "state"]
