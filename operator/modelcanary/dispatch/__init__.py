"""Sharded mode's per-object loops: which objects get one (``feed``) and running them (``loops``).

Neither knows kopf or the passes: ``handlers`` gives the loops to run.
"""
