"""Custom::CloudHsmCluster (a cluster restored from a backup) against botocore's Stubber (real CloudHSMv2 model)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber

from kommunmoln import names
from kommunmoln.tier_b import recorded
from lambdas.cloudhsm_provisioner import logic
from tests.controlplane.test_cloudhsm_provisioner import Stubs

BACKUP = "backup-abcdefghijk"
OTHER_BACKUP = "backup-zyxwvutsrqp"
NEW_CLUSTER = "cluster-restored2abcd"
OLD_CLUSTER = recorded.CLUSTER_ID
SUBNETS = ["subnet-0a000000000000000", "subnet-0b000000000000000"]
TAGS = [
    {"Key": names.TAG_PROJECT, "Value": names.PROJECT},
    {"Key": names.TAG_TIER, "Value": names.TIER_B},
    {"Key": names.TAG_RESTORED_FROM_BACKUP, "Value": BACKUP},
]


@pytest.fixture
def stubs() -> Iterator[Stubs]:
    s = Stubs()
    with s.hsm, s.kms, s.sm:  # KMS and Secrets Manager get no responses: any call to them fails the test
        yield s
        s.hsm.assert_no_pending_responses()


def props(*, backup: str = BACKUP, days: str = "90", workshop: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "SourceBackupId": backup,
        "HsmType": "hsm2m.medium",
        "SubnetIds": list(SUBNETS),
        "BackupRetentionDays": days,
        "Mode": "FIPS",
        "WorkshopMode": "true" if workshop else "false",
        **extra,
    }


def event(request: str = "Create", *, old: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "RequestType": request,
        "ResourceType": names.RESOURCE_CLOUDHSM_CLUSTER,
        "ResourceProperties": props(**kwargs),
        # is_complete always sees the physical id (the Provider merges onEvent's result into its event)
        "PhysicalResourceId": NEW_CLUSTER,
    }
    if old is not None:
        result["OldResourceProperties"] = old
    return result


def backups(state: str = "READY", mode: str = "FIPS", backup_id: str = BACKUP) -> dict[str, Any]:
    return {
        "Backups": [
            {
                "BackupId": backup_id,
                "BackupState": state,
                "ClusterId": OLD_CLUSTER,
                "CreateTimestamp": recorded.CREATED,
                "HsmType": "hsm2m.medium",
                "Mode": mode,
            }
        ]
    }


def cluster(state: str, *, cluster_id: str = NEW_CLUSTER, **kwargs: Any) -> dict[str, Any]:
    response = recorded.cluster(state, cluster_id=cluster_id, **kwargs)
    response["Clusters"][0]["SourceBackupId"] = BACKUP
    return response


def expect_describe(stubs: Stubs, response: dict[str, Any], cluster_id: str = NEW_CLUSTER) -> None:
    stubs.hsm.add_response("describe_clusters", response, {"Filters": {"clusterIds": [cluster_id]}})


def expect_restore(stubs: Stubs, *, backup: str = BACKUP, days: str = "90", cluster_id: str = NEW_CLUSTER) -> None:
    stubs.hsm.add_response("describe_backups", backups(backup_id=backup), {"Filters": {"backupIds": [backup]}})
    tags = [*TAGS[:2], {"Key": names.TAG_RESTORED_FROM_BACKUP, "Value": backup}]
    stubs.hsm.add_response(
        "create_cluster",
        {"Cluster": cluster("CREATE_IN_PROGRESS", cluster_id=cluster_id)["Clusters"][0]},
        {
            "HsmType": "hsm2m.medium",
            "SubnetIds": SUBNETS,
            "SourceBackupId": backup,
            "BackupRetentionPolicy": {"Type": "DAYS", "Value": days},
            "TagList": tags,
        },
    )


# --- create ------------------------------------------------------------------------------------
def test_create_restores_from_the_backup_without_mode_and_with_tags(stubs: Stubs) -> None:
    # GIVEN a READY backup of a FIPS cluster
    expect_restore(stubs)
    # WHEN the resource is created
    result = stubs.on_event(event())
    # THEN CreateCluster names the backup, the subnets, the retention and our tags (Mode comes from the backup)
    # AND the physical id is the new cluster's id
    assert result["PhysicalResourceId"] == NEW_CLUSTER
    assert result["Data"]["ClusterId"] == NEW_CLUSTER


@pytest.mark.parametrize("state", ["INITIALIZED", "ACTIVE"])
def test_is_complete_waits_for_creation_then_reports_the_security_group(stubs: Stubs, state: str) -> None:
    # GIVEN a cluster that is first still being created, then restored
    expect_describe(stubs, cluster("CREATE_IN_PROGRESS"))
    expect_describe(stubs, cluster(state))
    # WHEN is_complete polls twice
    first, second = stubs.is_complete(event()), stubs.is_complete(event())
    # THEN it waits, then completes with the id, the security group and the state
    assert first == {"IsComplete": False}
    assert second == {
        "IsComplete": True,
        "Data": {"ClusterId": NEW_CLUSTER, "SecurityGroup": "sg-0aaaabbbbccccdddd", "State": state},
    }


@pytest.mark.parametrize("state", ["DEGRADED", "DELETED", "DELETE_IN_PROGRESS", "CREATE_FAILED"])
def test_is_complete_fails_fast_when_the_restore_fails(stubs: Stubs, state: str) -> None:
    # GIVEN a cluster that ended in a failure state
    expect_describe(stubs, cluster(state, message="subnet has no free address"))
    # WHEN is_complete looks
    with pytest.raises(logic.ProvisioningError) as raised:
        stubs.is_complete(event())
    # THEN it fails at once naming the state, the service's message and the backup
    text = str(raised.value)
    assert state in text and "subnet has no free address" in text and BACKUP in text


def test_is_complete_refuses_a_restored_cluster_that_is_uninitialized(stubs: Stubs) -> None:
    # GIVEN a "restored" cluster that came up UNINITIALIZED (the backup held nothing to restore)
    expect_describe(stubs, cluster("UNINITIALIZED"))
    # WHEN is_complete looks THEN it fails: no users, no key material, the key store could never move to it
    with pytest.raises(logic.ProvisioningError, match=r"UNINITIALIZED.*no users and no key material"):
        stubs.is_complete(event())


def test_is_complete_refuses_a_cluster_in_another_mode(stubs: Stubs) -> None:
    # GIVEN a restored cluster that is NON_FIPS while tier B requires FIPS
    response = cluster("ACTIVE")
    response["Clusters"][0]["Mode"] = "NON_FIPS"
    expect_describe(stubs, response)
    # WHEN is_complete looks THEN it refuses it
    with pytest.raises(logic.ProvisioningError, match="is NON_FIPS, not FIPS"):
        stubs.is_complete(event())


def test_is_complete_fails_when_the_cluster_vanished(stubs: Stubs) -> None:
    # GIVEN DescribeClusters returns nothing for the new id
    expect_describe(stubs, {"Clusters": []})
    # WHEN is_complete looks THEN it fails clearly
    with pytest.raises(logic.ProvisioningError, match=f"{NEW_CLUSTER} not found while restoring from {BACKUP}"):
        stubs.is_complete(event())


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (backups("PENDING_DELETION"), "restore-backup --backup-id"),
        (backups("CREATE_IN_PROGRESS"), "not READY"),
        ({"Backups": []}, "not found in this account and Region"),
        (backups(mode="NON_FIPS"), "NON_FIPS cluster but tier B requires a FIPS cluster"),
    ],
)
def test_create_refuses_a_backup_that_cannot_give_the_cluster(
    stubs: Stubs, response: dict[str, Any], message: str
) -> None:
    # GIVEN a backup that is pending deletion, not ready, missing, or of a non-FIPS cluster
    stubs.hsm.add_response("describe_backups", response, {"Filters": {"backupIds": [BACKUP]}})
    # WHEN the resource is created THEN it fails before CreateCluster, saying what to do
    with pytest.raises(logic.ProvisioningError, match=message):
        stubs.on_event(event())


def test_create_retries_throttling_with_the_injected_sleep(stubs: Stubs) -> None:
    # GIVEN CreateCluster is throttled twice
    stubs.hsm.add_response("describe_backups", backups(), {"Filters": {"backupIds": [BACKUP]}})
    for _ in range(2):
        stubs.hsm.add_client_error("create_cluster", "ThrottlingException", "Rate exceeded")
    stubs.hsm.add_response("create_cluster", {"Cluster": cluster("CREATE_IN_PROGRESS")["Clusters"][0]})
    # WHEN the resource is created
    result = stubs.on_event(event())
    # THEN it succeeds after two bounded, instant backoffs
    assert result["PhysicalResourceId"] == NEW_CLUSTER
    assert len(stubs.sleeps) == 2 and all(0 < s <= logic.MAX_DELAY_SECONDS for s in stubs.sleeps)


def test_create_reports_an_api_error_with_the_call_and_code(stubs: Stubs) -> None:
    # GIVEN CreateCluster rejects the request (e.g. the subnets are in another VPC)
    stubs.hsm.add_response("describe_backups", backups(), {"Filters": {"backupIds": [BACKUP]}})
    stubs.hsm.add_client_error("create_cluster", "CloudHsmInvalidRequestException", "subnets in different VPCs")
    # WHEN the resource is created THEN the error names the resource type, the call and the code
    with pytest.raises(logic.ProvisioningError) as raised:
        stubs.on_event(event())
    text = str(raised.value)
    assert names.RESOURCE_CLOUDHSM_CLUSTER in text
    assert "CreateCluster failed with CloudHsmInvalidRequestException: subnets in different VPCs" in text


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"backup": "snapshot-1"}, "property SourceBackupId"),
        ({"days": "6"}, "BackupRetentionDays must be a whole number from 7 to 379"),
        ({"SubnetIds": []}, "SubnetIds must be a non-empty list"),
        ({"SubnetIds": [SUBNETS[0], SUBNETS[0]]}, "lists a subnet twice"),
        ({"Mode": "WEAK"}, "property Mode"),
    ],
)
def test_bad_properties_fail_before_any_call(stubs: Stubs, overrides: dict[str, Any], message: str) -> None:
    # GIVEN a malformed property WHEN the resource is created THEN nothing is called and the error says why
    with pytest.raises(logic.ProvisioningError, match=message):
        stubs.on_event(event(**overrides))


# --- update ------------------------------------------------------------------------------------
def test_update_changes_only_the_backup_retention_in_place(stubs: Stubs) -> None:
    # GIVEN the retention goes from 90 to 120 days
    expect_describe(stubs, cluster("ACTIVE"))
    stubs.hsm.add_response(
        "modify_cluster",
        {"Cluster": cluster("MODIFY_IN_PROGRESS")["Clusters"][0]},
        {"ClusterId": NEW_CLUSTER, "BackupRetentionPolicy": {"Type": "DAYS", "Value": "120"}},
    )
    # WHEN the resource is updated
    result = stubs.on_event(event("Update", days="120", old=props()))
    # THEN ModifyCluster is called and the cluster stays the same physical resource
    assert result["PhysicalResourceId"] == NEW_CLUSTER
    assert result["Data"]["State"] == "MODIFY_IN_PROGRESS"


def test_update_of_workshop_mode_only_calls_nothing_but_describe(stubs: Stubs) -> None:
    # GIVEN only WorkshopMode changes (it matters on delete only)
    expect_describe(stubs, cluster("ACTIVE"))
    # WHEN the resource is updated THEN nothing is modified
    result = stubs.on_event(event("Update", workshop=True, old=props()))
    assert result["PhysicalResourceId"] == NEW_CLUSTER


@pytest.mark.parametrize(
    ("old", "changed"),
    [
        (props(backup=OTHER_BACKUP), "SourceBackupId"),
        (props(SubnetIds=["subnet-0c000000000000000", SUBNETS[1]]), "SubnetIds"),
        (props(HsmType="hsm1.medium"), "HsmType"),
    ],
)
def test_update_refuses_to_replace_an_existing_cluster(stubs: Stubs, old: dict[str, Any], changed: str) -> None:
    # GIVEN the restored cluster still exists, with its HSMs
    expect_describe(stubs, cluster("ACTIVE", hsms=[recorded.hsm("hsm-aaaaaaaaaaa", recorded.ZONES[0], "ACTIVE")]))
    # WHEN an update would need another cluster
    with pytest.raises(logic.ProvisioningError) as raised:
        stubs.on_event(event("Update", old=old))
    # THEN it is refused (no CreateCluster), naming what changed and the deliberate way out
    text = str(raised.value)
    assert f"refusing to replace CloudHSM cluster {NEW_CLUSTER} (ACTIVE, 1 HSM(s)): {changed} changed" in text
    assert "deliberate operator action" in text and "docs/use-case-2.md#restore" in text


def test_update_restores_again_when_the_old_cluster_is_gone(stubs: Stubs) -> None:
    # GIVEN the restored cluster was lost too, and the operator chose a newer backup
    expect_describe(stubs, cluster("DELETED"))
    expect_restore(stubs, backup=OTHER_BACKUP, cluster_id="cluster-restored3efgh")
    # WHEN the resource is updated
    result = stubs.on_event(event("Update", backup=OTHER_BACKUP, old=props()))
    # THEN a new cluster is restored (a new physical id: CloudFormation then retires the old one)
    assert result["PhysicalResourceId"] == "cluster-restored3efgh"


def test_update_fails_when_the_cluster_was_deleted_outside_cloudformation(stubs: Stubs) -> None:
    # GIVEN nothing that defines the cluster changed, but it no longer exists
    expect_describe(stubs, {"Clusters": []})
    # WHEN the resource is updated THEN the error says how to restore again
    with pytest.raises(logic.ProvisioningError, match=r"no longer exists.*set tier_b_restore_backup_id"):
        stubs.on_event(event("Update", days="120", old=props()))


# --- delete ------------------------------------------------------------------------------------
def test_delete_of_a_rolled_back_create_deletes_the_empty_cluster(stubs: Stubs) -> None:
    # GIVEN production (not workshop mode): the resource's DeletionPolicy is RetainExceptOnCreate, so
    # CloudFormation sends Delete only when the create of this resource is rolled back ("If the stack
    # operation that created the resource is rolled back, CloudFormation deletes the resource",
    # https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-attribute-deletionpolicy.html)
    expect_describe(stubs, cluster("INITIALIZED"))
    stubs.hsm.add_response(
        "delete_cluster", {"Cluster": cluster("DELETE_IN_PROGRESS")["Clusters"][0]}, {"ClusterId": NEW_CLUSTER}
    )
    expect_describe(stubs, cluster("DELETED"))
    # WHEN the resource is deleted and is_complete asked
    stubs.on_event(event("Delete"))
    done = stubs.is_complete(event("Delete"))
    # THEN the just-restored cluster (no HSMs; its backup stays) is deleted, so a retry does not make another
    assert done == {"IsComplete": True}


def test_workshop_delete_deletes_the_cluster_and_waits_for_deleted(stubs: Stubs) -> None:
    # GIVEN workshop mode and a cluster whose HSMs the HSMs resource already deleted
    expect_describe(stubs, cluster("ACTIVE", hsms=[recorded.hsm("hsm-aaaaaaaaaaa", recorded.ZONES[0], "DELETED")]))
    stubs.hsm.add_response(
        "delete_cluster", {"Cluster": cluster("DELETE_IN_PROGRESS")["Clusters"][0]}, {"ClusterId": NEW_CLUSTER}
    )
    expect_describe(stubs, cluster("DELETE_IN_PROGRESS"))
    expect_describe(stubs, cluster("DELETED"))
    # WHEN the resource is deleted and is_complete polls twice
    stubs.on_event(event("Delete", workshop=True))
    polls = [stubs.is_complete(event("Delete", workshop=True)) for _ in range(2)]
    # THEN DeleteCluster was called and the delete completes once the cluster is DELETED
    assert polls == [{"IsComplete": False}, {"IsComplete": True}]


def test_workshop_delete_refuses_while_hsms_remain(stubs: Stubs) -> None:
    # GIVEN workshop mode and an HSM someone added by hand
    expect_describe(stubs, cluster("ACTIVE", hsms=[recorded.hsm("hsm-bbbbbbbbbbb", recorded.ZONES[1], "ACTIVE")]))
    # WHEN the resource is deleted THEN DeleteCluster is not called and the error names the HSM
    with pytest.raises(logic.ProvisioningError, match=r"still has HSMs \(hsm-bbbbbbbbbbb\)"):
        stubs.on_event(event("Delete", workshop=True))


def test_workshop_delete_of_a_cluster_already_gone_is_a_no_op(stubs: Stubs) -> None:
    # GIVEN workshop mode and a cluster that no longer exists
    expect_describe(stubs, {"Clusters": []})
    expect_describe(stubs, {"Clusters": []})
    # WHEN the resource is deleted THEN it completes without DeleteCluster
    assert stubs.on_event(event("Delete", workshop=True)) == {"PhysicalResourceId": NEW_CLUSTER}
    assert stubs.is_complete(event("Delete", workshop=True)) == {"IsComplete": True}


def test_stubber_uses_the_real_cloudhsmv2_model() -> None:
    # GIVEN the shared clients WHEN a response outside the model is stubbed THEN botocore rejects it
    stubber = Stubber(Stubs().clients.cloudhsm)
    with pytest.raises(Exception, match=r"Unknown parameter|Invalid"):
        stubber.add_response("create_cluster", {"Cluster": {"NoSuchField": 1}})
