"""Names and label values derived from a ModelDeployment's name.

A ModelDeployment's name is a DNS subdomain: it may hold dots, start with a
digit and run to 253 characters. What the operator names after it (a
Service, a CronJob, the ``modelcanary.io/model`` label) allows less. These
helpers make such a name fit, and they live beside the API because every
layer needs the same answer: the workload builders, the pure drill
schedule, the CLI that labels a drill and the passes that select by label.
A name that already fits is kept as it is; any other gets a short hash of
the original, so two different names never collapse into one.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

LABEL_MODEL: Final = "modelcanary.io/model"
MAX_NAME: Final = 63
MAX_LABEL_VALUE: Final = 63

_NOT_IN_LABEL = re.compile(r"[^a-z0-9-]+")
_NOT_IN_LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]+")


def short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def dns_label(text: str, max_length: int = MAX_NAME) -> str:
    """``text`` as a DNS-1035 label (what a Service name must be), at most ``max_length``."""
    if len(text) <= max_length and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", text):
        return text
    suffix = "-" + short_hash(text)
    cleaned = _NOT_IN_LABEL.sub("-", text.lower()).strip("-")
    if not cleaned[:1].isalpha():
        cleaned = "m-" + cleaned
    cleaned = cleaned[: max_length - len(suffix)].rstrip("-")
    return cleaned + suffix


def label_value(text: str) -> str:
    """``text`` as a label value (63 characters at most, alphanumeric at both ends)."""
    if len(text) <= MAX_LABEL_VALUE and re.fullmatch(
        r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?", text
    ):
        return text
    suffix = "-" + short_hash(text)
    cleaned = _NOT_IN_LABEL_VALUE.sub("-", text).strip("-_.")
    cleaned = cleaned[: MAX_LABEL_VALUE - len(suffix)].rstrip("-_.")
    return (cleaned + suffix).lstrip("-")


def model_label(md_name: str) -> str:
    """The value of ``modelcanary.io/model`` for a ModelDeployment (also its LIST selector)."""
    return label_value(md_name)
