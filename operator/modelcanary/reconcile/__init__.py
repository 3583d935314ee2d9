"""The ModelDeployment's reconcile pass: observe, decide, act, write status once.

``reconciler`` holds the pass and its order (read it first); ``acts`` carries
out one action of a decision; ``looks`` runs one look at Prometheus. The drill's
pass (``drill_executor``) uses the last two as well (``acts.carry_out`` with the
reconciler's client, and its ``Reconciler.looks``), so a drill acts and looks as
a rollout does.
"""

from modelcanary.reconcile.reconciler import PassResult, Reconciler

__all__ = ["PassResult", "Reconciler"]
