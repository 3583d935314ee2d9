"""The Lease edge's pure parts: names a replica identity makes, and what is read of a Lease."""

from __future__ import annotations

import pytest

from modelcanary.shards.leases import lease_record, replica_lease_name, shard_lease_name
from modelcanary.shards.ownership import LeaseRecord

pytestmark = pytest.mark.unit


def test_lease_names() -> None:
    assert shard_lease_name(7) == "modelcanary-shard-7"
    assert (
        replica_lease_name("modelcanary-5d9f-x2x7q") == "modelcanary-replica-modelcanary-5d9f-x2x7q"
    )


@pytest.mark.parametrize("identity", ["", "Op-A", "op_a", "op-", "a" * 240])
def test_an_identity_that_makes_no_object_name_is_refused(identity: str) -> None:
    with pytest.raises(ValueError, match="valid Lease name"):
        replica_lease_name(identity)


def test_a_released_or_fresh_lease_has_no_holder() -> None:
    held = {
        "metadata": {"name": "modelcanary-shard-1", "resourceVersion": "42"},
        "spec": {"holderIdentity": "op-a", "leaseDurationSeconds": 15},
    }
    assert lease_record(held) == LeaseRecord("op-a", "42", 15.0)
    released = {"metadata": {"resourceVersion": "43"}, "spec": {"holderIdentity": ""}}
    assert lease_record(released) == LeaseRecord(None, "43", 0.0)
    assert lease_record({"metadata": {"resourceVersion": "1"}}).holder is None
