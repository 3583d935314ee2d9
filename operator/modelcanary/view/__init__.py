"""The operator's in-memory view of the objects a pass reads, fed by watches.

A pass used to LIST and GET what it reads (the revisions' Deployments, their
HPAs and Services, the model's RollbackDrills, the HTTPRoute) every time it
ran, and an idle object ran a pass every 30 s: at 1,000 ModelDeployments that
was 8,610 API requests a minute for nothing. Controllers built on informers
read from a watch cache instead and do almost nothing at rest; this package
is that cache:

* ``store``: pure. Objects keyed by (kind, namespace, name), indexed by
  (namespace, ``modelcanary.io/model`` label), replaced only by newer
  versions; every change names the model it belongs to, so its pass can be
  woken.
* ``watch``: the I/O edge. One LIST then WATCH per kind, with the operator's
  label selector; it re-lists on 410 Gone, reconnects with backoff, and
  tolerates a kind whose CRD is not installed (no Gateway API).
"""
