"""Each revision's Deployment and Service: pure builders, and a thin applier.

``builders`` turns a predictor into manifests and imports nothing that does
I/O, so it is tested with plain values. ``applier`` is the only part that
talks to the API server (kr8s, async), and it does as little as it can: create
what is missing, patch what differs, and list a model's revisions in one call.
"""
