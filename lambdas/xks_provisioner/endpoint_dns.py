"""Custom::XksEndpointServicePrivateDns: wait until the endpoint service's private DNS name is verified.

KMS requires it (KMS API Reference, ConnectionErrorCode XKS_VPC_ENDPOINT_SERVICE_INVALID_CONFIGURATION: "The
domain of the private DNS name must have a verification status of verified"). AWS PrivateLink verifies a
domain by a TXT record the service provider publishes in the domain's public DNS ("Manage DNS names for VPC
endpoint services", https://docs.aws.amazon.com/vpc/latest/privatelink/manage-dns-names.html):
DescribeVpcEndpointServiceConfigurations returns PrivateDnsNameConfiguration {State: pendingVerification |
verified | failed, Type: TXT, Name, Value}; StartVpcEndpointServicePrivateDnsVerification checks it again.

The TXT record exists only once the service does, so the operator publishes it while this resource waits;
the handler logs the record on every poll and gives up after VERIFY_WAIT_SECONDS with the record in the error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from lambdas.cloudhsm_provisioner.common import LOG, ProvisioningError, Sleep, call, prop

VERIFY_WAIT_SECONDS = 45 * 60  # inside the Provider's total timeout (55 min), so the error names the record
SERVICE_ID = r"vpce-svc-[0-9a-f]{8,17}"
Clock = Callable[[], float]


def _configuration(ec2: Any, service_id: str, *, sleep: Sleep) -> Mapping[str, Any]:
    found = call(ec2.describe_vpc_endpoint_service_configurations, sleep=sleep, ServiceIds=[service_id])
    configurations = found.get("ServiceConfigurations", [])
    if not configurations:
        raise ProvisioningError(f"VPC endpoint service {service_id} not found")
    return configurations[0]


def txt_record(configuration: Mapping[str, Any], domain: str) -> str:
    """The TXT record to publish, as one line (name and value are not secret)."""
    dns = configuration.get("PrivateDnsNameConfiguration", {})
    return f'{dns.get("Name", "?")}.{domain} TXT "{dns.get("Value", "?")}"'


def dns_on_event(event: Mapping[str, Any], clients: Any, sleep: Sleep, *, clock: Clock = time.time) -> dict[str, Any]:
    props = event["ResourceProperties"]
    service_id = prop(props, "ServiceId", pattern=SERVICE_ID)
    domain = prop(props, "PrivateDnsName", pattern=r"[a-zA-Z0-9.-]{3,120}")
    if event["RequestType"] == "Delete":
        return {"PhysicalResourceId": event.get("PhysicalResourceId", service_id)}
    configuration = _configuration(clients.ec2, service_id, sleep=sleep)
    if configuration.get("PrivateDnsName") != domain:
        raise ProvisioningError(
            f"VPC endpoint service {service_id} has private DNS name {configuration.get('PrivateDnsName')!r}, "
            f"not {domain!r}"
        )
    state = configuration.get("PrivateDnsNameConfiguration", {}).get("State")
    if state != "verified":
        call(clients.ec2.start_vpc_endpoint_service_private_dns_verification, sleep=sleep, ServiceId=service_id)
        LOG.warning(
            "publish %s in the public DNS of %s; waiting for its verification",
            txt_record(configuration, domain),
            domain,
        )
    return {
        "PhysicalResourceId": f"{service_id}:{domain}",
        "Data": {"ServiceName": configuration["ServiceName"], "WaitStartedAt": str(int(clock()))},
    }


def dns_is_complete(
    event: Mapping[str, Any], clients: Any, sleep: Sleep, *, clock: Clock = time.time
) -> dict[str, Any]:
    if event["RequestType"] == "Delete":
        return {"IsComplete": True}
    props = event["ResourceProperties"]
    service_id = prop(props, "ServiceId", pattern=SERVICE_ID)
    domain = prop(props, "PrivateDnsName", pattern=r"[a-zA-Z0-9.-]{3,120}")
    configuration = _configuration(clients.ec2, service_id, sleep=sleep)
    state = configuration.get("PrivateDnsNameConfiguration", {}).get("State")
    if state == "verified":
        return {"IsComplete": True, "Data": {"ServiceName": configuration["ServiceName"]}}
    started = float(event.get("Data", {}).get("WaitStartedAt") or clock())
    if clock() - started > VERIFY_WAIT_SECONDS:
        raise ProvisioningError(
            f"the private DNS name {domain} of VPC endpoint service {service_id} is still {state} after "
            f"{VERIFY_WAIT_SECONDS // 60} minutes. Publish {txt_record(configuration, domain)} in the domain's public "
            "DNS, check it with `dig TXT`, then deploy again (docs/use-case-3.md, private DNS verification)"
        )
    if state == "failed":
        # A check ran before the record was published (or while it propagated): check again.
        call(clients.ec2.start_vpc_endpoint_service_private_dns_verification, sleep=sleep, ServiceId=service_id)
    LOG.warning("private DNS name %s is %s; publish %s", domain, state, txt_record(configuration, domain))
    return {"IsComplete": False}
