"""Which pass a change wakes: the view's owners, mapped to the daemons that run them.

Pure bookkeeping kept out of ``handlers`` so it can be tested without kopf:
a ModelDeployment's daemon registers under its owner, (namespace, model
label), and a change the view reports for that owner wakes it. A change
with no registered owner (an object whose ModelDeployment is gone, or
another operator's) wakes nobody.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from modelcanary.api.names import model_label
from modelcanary.view.store import Owner


def owner_for(namespace: str, md_name: str) -> Owner:
    """The owner a ModelDeployment's objects carry: its namespace and model label."""
    return namespace, model_label(md_name)


@dataclass
class WakeRoutes:
    """owner -> the uids of the daemons to wake (one, unless two names share a label)."""

    _uids: dict[Owner, set[str]] = field(default_factory=dict)

    def register(self, owner: Owner, uid: str) -> None:
        self._uids.setdefault(owner, set()).add(uid)

    def unregister(self, owner: Owner, uid: str) -> None:
        uids = self._uids.get(owner)
        if uids is None:
            return
        uids.discard(uid)
        if not uids:
            del self._uids[owner]

    def targets(self, owners: Iterable[Owner]) -> set[str]:
        return {uid for owner in owners for uid in self._uids.get(owner, ())}
