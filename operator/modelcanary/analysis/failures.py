"""Why a query gave no usable answer, named by what will end it.

A query that failed is one of two things, and the difference decides what the
rollout does about it:

* an **outage**: Prometheus is unreachable, slow or answered 5xx. Waiting may
  fix it, so the rollout holds under ``analysis.outage`` and goes on by itself
  when Prometheus is back;
* an **error**: Prometheus rejected the query (HTTP 400 ``bad_data``, 422), or
  its answer cannot be judged (several series where one number is needed, a
  string, a range vector, counters that are not counters). Waiting will not
  fix it; a person has to change the query, so the rollout follows
  ``analysis.queryError`` (by default it pauses) and never promotes.

The kind travels with the failure from the provider that saw it to the verdict,
so nothing in between has to guess from a message's text.

Pure: standard library only.
"""

from __future__ import annotations

import enum


class Failure(enum.StrEnum):
    """What will end a query's failure: waiting (an outage) or a person (an error)."""

    OUTAGE = "Outage"
    ERROR = "Error"
