"""Which partition a Region belongs to and which tiers it can offer, from the SDK's endpoint data.

No AWS call: botocore ships the endpoint data of every partition (the same data `make preflight`
reads). Tier A needs S3 and Lambda; tier B adds CloudHSM (cloudhsmv2) and KMS; tier C needs KMS and,
with VPC endpoint service connectivity, EC2 and Elastic Load Balancing. The AWS European Sovereign
Cloud (partition aws-eusc, region eusc-de-east-1) lists KMS but not CloudHSM, so tier B is not offered
there (unverified with AWS beyond the SDK's data).
"""

from __future__ import annotations

import functools

from kommunmoln import names

# Services each tier needs (boto3 service names as in the endpoint data).
TIER_SERVICES: dict[str, tuple[str, ...]] = {
    names.USE_CASE_CLIENT_SIDE: ("s3", "lambda", "kms", "sns"),
    names.USE_CASE_CLOUDHSM: ("s3", "lambda", "kms", "cloudhsmv2"),
    names.USE_CASE_EXTERNAL_KEY_STORE: ("s3", "lambda", "kms", "secretsmanager", "ec2"),
}


def partition_of(region: str) -> str:
    """The partition of `region` (aws, aws-eusc, aws-cn, ...); raises ValueError for an unknown Region."""
    for partition, regions in _regions_by_partition().items():
        if region in regions:
            return partition
    raise ValueError(f"{region!r} is not a Region of any partition in the SDK's endpoint data")


def missing_services(use_case: str, region: str) -> list[str]:
    """The services `use_case` needs that the endpoint data does not list for `region`."""
    import boto3

    session = boto3.Session()
    partition = partition_of(region)
    return [s for s in TIER_SERVICES[use_case] if region not in session.get_available_regions(s, partition)]


def tiers_offered(region: str) -> dict[str, list[str]]:
    """Use case -> the services it lacks in `region` (an empty list: the tier is offered)."""
    return {use_case: missing_services(use_case, region) for use_case in names.USE_CASES}


@functools.cache
def _regions_by_partition() -> dict[str, frozenset[str]]:
    import boto3

    session = boto3.Session()
    # Every partition lists EC2 in each of its Regions: the Region list of a partition.
    return {p: frozenset(session.get_available_regions("ec2", p)) for p in session.get_available_partitions()}
