"""Sharding the ModelDeployments across the operator's replicas, with Leases.

kopf's peering makes one replica active and the others idle standbys, so a
thousand ModelDeployments are all driven by one process however many run. With
sharding, each replica owns a stable share (a hash of namespace/name picks the
shard), takes over a dead replica's shards within a bounded time, and never
acts on an object whose shard it does not hold, so no two replicas ever act on
one object. The package is split the way the rest of the operator is:

* ``ownership``: pure. The shard of an object, the timing rules, and the claim
  planner that decides each round which shard Leases to acquire, renew and
  release; and whether this replica may act on an object now. Property-tested
  in tests/unit/shards with simulated replicas, kills, joins and slow rounds.
* ``leases``: the I/O edge. ``coordination.k8s.io/v1`` Leases, one per shard
  and one per replica (its presence), written with optimistic concurrency;
  :class:`~modelcanary.shards.leases.ShardManager` runs the planner's rounds.

``modelcanary.dispatch`` runs the passes of the owned objects (docs/sharding.md).
"""
