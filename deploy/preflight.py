"""`make preflight`: read-only checks a platform engineer runs with credentials before `make deploy`.

It reads the synthesized cloud assembly (cdk.out, made by `make synth` without any AWS call) and the
validated config, then asks AWS only read-only questions. One line per check, `ok` or `PROBLEM` with the
remedy; the exit code is 1 when any check found a problem, 2 when the checks could not run at all.

Rules it relies on (each check says which):
- Lambda keeps 100 units of concurrency unreserved; a reservation that would leave less fails
  (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html).
- The CDK bootstrap stack records its version in the SSM parameter /cdk-bootstrap/<qualifier>/version;
  each template states the minimum it needs (https://docs.aws.amazon.com/cdk/v2/guide/bootstrapping-env.html).
- S3 bucket names are global: HeadBucket answers 404 only for a name no one uses.
- CloudHSM is billed per HSM-hour from creation to deletion (https://aws.amazon.com/cloudhsm/pricing/);
  the price comes from the AWS Price List API (pricing:GetProducts, served in us-east-1).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from kommunmoln import names, regions
from kommunmoln.config import AppConfig, ConfigError, load_config
from stacks.components.function import POWERTOOLS_PARAMETER

REPO_ROOT = Path(__file__).resolve().parent.parent
LAMBDA_UNRESERVED_MINIMUM = 100
BOOTSTRAP_PARAMETER = "/cdk-bootstrap/hnb659fds/version"
HSM_TYPE = "hsm2m.medium"
EXIT_PROBLEM, EXIT_CANNOT_RUN = 1, 2


@dataclass(frozen=True)
class Result:
    name: str
    ok: bool
    detail: str
    remedy: str = ""

    def line(self) -> str:
        if self.ok:
            return f"ok       {self.name}: {self.detail}"
        return f"PROBLEM  {self.name}: {self.detail}. Remedy: {self.remedy}"


@dataclass(frozen=True)
class Assembly:
    """The synthesized templates and what the checks need from them."""

    templates: Mapping[str, Mapping[str, Any]]
    bootstrap_version: int

    @staticmethod
    def read(outdir: Path) -> Assembly:
        manifest = json.loads((outdir / "manifest.json").read_text(encoding="utf-8"))
        versions = [
            a.get("properties", {}).get("requiresBootstrapStackVersion") or 0 for a in manifest["artifacts"].values()
        ]
        templates = {p.name.removesuffix(".template.json"): json.loads(p.read_text(encoding="utf-8"))
                     for p in outdir.glob("*.template.json")}  # fmt: skip
        return Assembly(templates=templates, bootstrap_version=max(versions, default=0))

    def resources(self, kind: str) -> Iterator[Mapping[str, Any]]:
        for template in self.templates.values():
            for resource in template.get("Resources", {}).values():
                if resource.get("Type") == kind:
                    yield resource.get("Properties", {})


def _literal(value: Any, *, account: str, region: str, partition: str) -> str | None:
    """A template value as text when it is a literal or a join of literals and pseudo parameters."""
    pseudo = {"AWS::AccountId": account, "AWS::Region": region, "AWS::Partition": partition}
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Ref" in value:
        return pseudo.get(value["Ref"])
    if isinstance(value, dict) and "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        texts = [_literal(p, account=account, region=region, partition=partition) for p in parts]
        return None if any(t is None for t in texts) else sep.join(texts)  # type: ignore[arg-type]
    return None


Clients = Callable[[str], Any]  # service name -> boto3 client (region of the config; pricing: us-east-1)


def run_checks(config: AppConfig, assembly: Assembly, client: Clients) -> list[Result]:
    """Every check, in order; a check that cannot ask AWS reports that as its problem."""
    results: list[Result] = []
    identity = client("sts").get_caller_identity()
    account, arn = identity["Account"], identity["Arn"]
    partition = arn.split(":")[1]
    if config.account and config.account != account:
        results.append(Result("account", False, f"credentials are for {account}, the config names {config.account}",
                              "use the profile of the configured account (AWS_PROFILE=...) or fix `account`"))  # fmt: skip
    else:
        results.append(Result("account", True, f"{account} ({arn}), partition {partition}"))
    results.append(_region(config, partition, client))
    results.append(tiers_offered(config.region))
    for check in (_bootstrap, _lambda_headroom, _powertools, _fixed_names, _required_settings, _hsm_cost):
        try:
            results += check(config, assembly, client, account=account, partition=partition)
        except (ClientError, BotoCoreError) as err:
            results.append(Result(check.__name__.strip("_").replace("_", "-"), False, f"could not check: {err}",
                                  "grant the read-only permission named in the error, or run the check by hand"))  # fmt: skip
    results.append(
        Result("workshop-mode", True, "ON: `make destroy` deletes every bucket, key and cluster" if config.workshop_mode
               else "off: buckets, keys, cluster and HSMs are retained when the stacks are deleted")
    )  # fmt: skip
    return results


def _region(config: AppConfig, partition: str, client: Clients) -> Result:
    # botocore's endpoint data lists the Regions where each service is offered in a partition (no AWS call).
    available = boto3.Session().get_available_regions
    needed = sorted({service for use_case in config.use_cases for service in regions.TIER_SERVICES[use_case]})
    missing = [s for s in needed if config.region not in available(s, partition_name=partition)]
    if missing:
        return Result("region", False, f"{config.region} in {partition} does not offer {', '.join(missing)}",
                      "choose a Region that offers them (config `region`) or drop the use case (`use_cases`)")  # fmt: skip
    return Result("region", True, f"{config.region} offers {', '.join(needed)}")


TIER_LABELS = {
    names.USE_CASE_CLIENT_SIDE: "A (client-side encryption)",
    names.USE_CASE_CLOUDHSM: "B (CloudHSM key store)",
    names.USE_CASE_EXTERNAL_KEY_STORE: "C (external key store, XKS)",
}


def tiers_offered(region: str) -> Result:
    """Which tiers the Region and its partition offer, from the SDK's endpoint data (no AWS call).

    E.g. eusc-de-east-1 (aws-eusc) offers tiers A and C: its endpoint data lists KMS but not CloudHSM.
    """
    partition = regions.partition_of(region)
    parts = []
    for use_case, missing in regions.tiers_offered(region).items():
        label = TIER_LABELS[use_case]
        parts.append(f"{label}: yes" if not missing else f"{label}: no ({', '.join(missing)} not offered)")
    return Result("tiers", True, f"{region} ({partition}) offers tier " + "; tier ".join(parts))


def _bootstrap(config: AppConfig, assembly: Assembly, client: Clients, **_: str) -> list[Result]:
    try:
        value = client("ssm").get_parameter(Name=BOOTSTRAP_PARAMETER)["Parameter"]["Value"]
    except ClientError as err:
        if err.response["Error"]["Code"] != "ParameterNotFound":
            raise
        return [Result("cdk-bootstrap", False, f"{config.region} is not bootstrapped",
                       f"npx cdk bootstrap aws://<account>/{config.region}")]  # fmt: skip
    if int(value) < assembly.bootstrap_version:
        return [Result("cdk-bootstrap", False, f"version {value}, the templates need {assembly.bootstrap_version}",
                       f"npx cdk bootstrap aws://<account>/{config.region} (upgrades the bootstrap stack)")]  # fmt: skip
    return [Result("cdk-bootstrap", True, f"version {value} (needed {assembly.bootstrap_version})")]


def _lambda_headroom(config: AppConfig, assembly: Assembly, client: Clients, **_: str) -> list[Result]:
    reserved = sum(int(p.get("ReservedConcurrentExecutions", 0)) for p in assembly.resources("AWS::Lambda::Function"))
    unreserved = client("lambda").get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    left = unreserved - reserved
    if reserved and left < LAMBDA_UNRESERVED_MINIMUM:
        return [Result("lambda-concurrency", False,
                       f"the stacks reserve {reserved} of {unreserved} unreserved; {left} would remain, Lambda keeps "
                       f"{LAMBDA_UNRESERVED_MINIMUM}",
                       "request a higher 'Concurrent executions' quota (Service Quotas) or deploy with "
                       "-c lambda_reserved_concurrency=false")]  # fmt: skip
    return [
        Result("lambda-concurrency", True, f"reserves {reserved}, {left} of the account's concurrency stays unreserved")
    ]


def _powertools(config: AppConfig, assembly: Assembly, client: Clients, **_: str) -> list[Result]:
    try:
        client("ssm").get_parameter(Name=POWERTOOLS_PARAMETER)
    except ClientError as err:
        if err.response["Error"]["Code"] != "ParameterNotFound":
            raise
        return [Result("powertools-layer", False, f"{POWERTOOLS_PARAMETER} does not exist in {config.region}",
                       "choose a Region where AWS publishes the Powertools layer, or pin another version in "
                       "stacks/components/function.py")]  # fmt: skip
    return [Result("powertools-layer", True, POWERTOOLS_PARAMETER)]


def _fixed_names(
    config: AppConfig, assembly: Assembly, client: Clients, *, account: str, partition: str
) -> list[Result]:
    results: list[Result] = []
    literal = lambda v: _literal(v, account=account, region=config.region, partition=partition)  # noqa: E731
    buckets = sorted({n for p in assembly.resources("AWS::S3::Bucket") if (n := literal(p.get("BucketName")))})
    taken = []
    for bucket in buckets:
        try:
            client("s3").head_bucket(Bucket=bucket)
            taken.append(bucket)
        except ClientError as err:
            if err.response["Error"]["Code"] not in ("404", "NoSuchBucket", "NotFound"):
                taken.append(bucket)  # 403: it exists, owned by someone else
    if taken:
        results.append(Result("bucket-names", False, f"already exist: {', '.join(taken)}",
                              "delete or rename them (a retained bucket from an earlier deployment: empty and delete it, "
                              "or change municipality_id)"))  # fmt: skip
    else:
        results.append(Result("bucket-names", True, f"{len(buckets)} names free"))
    templates = sorted(
        {n for p in assembly.resources("AWS::EC2::LaunchTemplate") if (n := literal(p.get("LaunchTemplateName")))}
    )
    if templates:
        found = client("ec2").describe_launch_templates(Filters=[{"Name": "launch-template-name", "Values": templates}])
        existing = [t["LaunchTemplateName"] for t in found.get("LaunchTemplates", [])]
        results.append(Result("launch-template-names", not existing,
                              f"already exist: {', '.join(existing)}" if existing else f"{len(templates)} names free",
                              "delete the leftover launch templates (aws ec2 delete-launch-template)"))  # fmt: skip
    aliases = sorted({n for kind in ("AWS::KMS::Alias", names.RESOURCE_KMS_HSM_KEY)
                      for p in assembly.resources(kind) if (n := literal(p.get("AliasName")))})  # fmt: skip
    existing_aliases = []
    for alias in aliases:
        try:
            client("kms").describe_key(KeyId=alias)
            existing_aliases.append(alias)
        except ClientError as err:
            if err.response["Error"]["Code"] != "NotFoundException":
                raise
    results.append(Result("key-aliases", not existing_aliases,
                          f"already exist: {', '.join(existing_aliases)}" if existing_aliases else f"{len(aliases)} free",
                          "a retained key from an earlier deployment holds the alias: adopt it (tier B adopts its own "
                          "alias in the key store) or delete the alias (aws kms delete-alias)"))  # fmt: skip
    return results


def _required_settings(config: AppConfig, assembly: Assembly, client: Clients, **_: str) -> list[Result]:
    if config.workshop_mode:
        return [Result("settings", True, "workshop mode: alarm e-mail and tier A client principals are optional")]
    results = [
        Result("alarm-email", bool(config.alarm_email), config.alarm_email or "not set",
               "set `alarm_email` (cdk.json or -c alarm_email=...): without it no one hears an alarm")
    ]  # fmt: skip
    if config.deploys(names.USE_CASE_CLIENT_SIDE):
        principals, networks = config.tier_a.data_access_principals, config.tier_a.client_source_ips
        where = f"only from {', '.join(networks)}" if networks else "from any network (tier_a_client_source_ips empty)"
        results.append(Result(
            "tier-a-clients", bool(principals),
            f"{len(principals)} principal(s) may reach the tier A bucket from outside the VPC, {where}" if principals
            else "tier_a_data_access_principals is empty: the perimeter denies every municipality client outside the VPC",
            "set tier_a_data_access_principals to the IAM role ARNs your file servers use (README, Deploy)",
        ))  # fmt: skip
    if config.deploys(names.USE_CASE_CLOUDHSM) and config.tier_b.admin_host:
        pin = config.tier_b.cloudhsm_cli_sha256
        results.append(Result(
            "cloudhsm-cli-pin", bool(pin), f"the admin host installs only the package with SHA-256 {pin}" if pin
            else "tier_b_cloudhsm_cli_sha256 is empty: the admin host refuses to install the CloudHSM CLI",
            "download the CloudHSM CLI RPM from AWS, run sha256sum on it and set tier_b_cloudhsm_cli_sha256 "
            "(docs/use-case-2.md#admin-host)",
        ))  # fmt: skip
    return results


def _hsm_cost(config: AppConfig, assembly: Assembly, client: Clients, **_: str) -> list[Result]:
    if not config.deploys(names.USE_CASE_CLOUDHSM):
        return [Result("hsm-cost", True, "tier B not deployed: no HSMs")]
    count = sum(int(p.get("HsmCount", 0)) for p in assembly.resources(names.RESOURCE_CLOUDHSM_HSMS))
    price = hsm_hourly_price(client("pricing"), config.region)
    if price is None:
        return [Result("hsm-cost", True, f"{count} HSM(s) of type {HSM_TYPE}; price not found in the Price List API, "
                       "see https://aws.amazon.com/cloudhsm/pricing/ (billed per HSM-hour until deleted)")]  # fmt: skip
    return [Result("hsm-cost", True, f"{count} HSM(s) x {price:.2f} USD/hour = {count * price:.2f} USD/hour, about "
                   f"{count * price * 730:.0f} USD/month until deleted")]  # fmt: skip


def hsm_hourly_price(pricing: Any, region: str) -> float | None:
    """The on-demand USD price per HSM-hour in `region` from the Price List API, or None."""
    products = pricing.get_products(
        ServiceCode="CloudHSM",
        Filters=[{"Type": "TERM_MATCH", "Field": "regionCode", "Value": region}],
        MaxResults=100,
    ).get("PriceList", [])
    for raw in products:
        product = json.loads(raw) if isinstance(raw, str) else raw
        for term in product.get("terms", {}).get("OnDemand", {}).values():
            for dimension in term.get("priceDimensions", {}).values():
                if dimension.get("unit", "").lower().startswith("hr") and HSM_TYPE in json.dumps(product):
                    return float(dimension["pricePerUnit"]["USD"])
    return None


def main(
    argv: Sequence[str] | None = None, *, client_factory: Callable[[str, str | None], Clients] | None = None
) -> int:
    parser = argparse.ArgumentParser(prog="make preflight", description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument(
        "--assembly", default=str(REPO_ROOT / "cdk.out"), help="the synthesized cloud assembly (cdk.out)"
    )
    parser.add_argument("--profile", help="AWS profile (default: the environment's credentials)")
    parser.add_argument("--context", action="append", default=[], metavar="KEY=VALUE",
                        help="a context value as given to cdk -c (repeatable; JSON values allowed)")  # fmt: skip
    parser.add_argument("--tiers", metavar="REGION",
                        help="only print which tiers REGION offers (no credentials, no cloud assembly needed)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.tiers:
        try:
            print(tiers_offered(args.tiers).line())
        except ValueError as err:
            print(f"preflight: {err}", file=sys.stderr)
            return EXIT_CANNOT_RUN
        return 0
    try:
        context = json.loads((REPO_ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]
        for item in args.context:
            key, _, value = item.partition("=")
            try:
                context[key] = json.loads(value)
            except ValueError:
                context[key] = value
        config = load_config(context)
        assembly = Assembly.read(Path(args.assembly))
    except (ConfigError, OSError, ValueError, KeyError) as err:
        print(f"preflight: cannot run: {err} (run `make synth` first)", file=sys.stderr)
        return EXIT_CANNOT_RUN
    client = (client_factory or _boto3_clients)(config.region, args.profile)
    try:
        results = run_checks(config, assembly, client)
    except (ClientError, BotoCoreError) as err:
        print(f"preflight: cannot run: {err} (are credentials set? AWS_PROFILE=...)", file=sys.stderr)
        return EXIT_CANNOT_RUN
    for result in results:
        print(result.line())
    problems = [r for r in results if not r.ok]
    print(f"preflight: {len(problems)} problem(s)" if problems else "preflight: ready to deploy")
    return EXIT_PROBLEM if problems else 0


def _boto3_clients(region: str, profile: str | None) -> Clients:
    session = boto3.Session(profile_name=profile, region_name=region)
    cache: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in cache:
            # The Price List API is served from us-east-1 (and ap-south-1) only.
            cache[service] = session.client(service, region_name="us-east-1" if service == "pricing" else region)
        return cache[service]

    return client


if __name__ == "__main__":
    sys.exit(main())
