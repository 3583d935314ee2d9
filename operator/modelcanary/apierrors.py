"""What a call to the Kubernetes API raises when the API server, not the request, failed.

kr8s raises ``kr8s.ServerError`` for an error answer (5xx, 429 while an API
server starts, a 409 conflict), but a refused or reset connection (the API
server restarting, a control-plane upgrade, a network blip) comes through as
httpx's ``TransportError``, which is no ``OSError``. A pass that let it escape
failed its kopf daemon, and kopf waits 60 s before it starts a failed daemon
again: a 10 s API-server restart held a rollback for a minute (found by the
chaos run, ``e2e/chaos.py``). Every edge that retries after an API failure
catches this one tuple, so such a restart is a short retry everywhere.
"""

from __future__ import annotations

import httpx
import kr8s

API_ERRORS: tuple[type[Exception], ...] = (kr8s.ServerError, httpx.TransportError, OSError)
"""Failures of an API call that the next pass may not see again."""

API_OR_MISSING: tuple[type[Exception], ...] = (*API_ERRORS, kr8s.NotFoundError)
"""The same, or the object is gone: what reading something the pass needs may raise."""

ACTION_ERRORS: tuple[type[Exception], ...] = (*API_OR_MISSING, ValueError)
"""What carrying out one action may raise; the pass stops at the first and says which."""
