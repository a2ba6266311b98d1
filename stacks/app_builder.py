"""Builds the whole app from a validated config: the one place where stacks are wired."""

from __future__ import annotations

import aws_cdk as cdk

from kommunmoln import names
from kommunmoln.config import AppConfig
from stacks.compliance import add_compliance_packs
from stacks.components.function import WithoutReservedConcurrency
from stacks.network_stack import NetworkStack
from stacks.tier_a_stack import TierAStack
from stacks.tier_b_stack import TierBStack
from stacks.tier_b_stack import description as tier_b_description
from stacks.tier_c_stack import TierCStack
from stacks.tier_c_stack import description as tier_c_description


def workshop_notice(config: AppConfig) -> str:
    """One line saying which deletion behaviour this synthesis gets (printed by app.py and `make deploy`)."""
    if config.workshop_mode:
        return (
            "kommunmoln: WORKSHOP MODE: every bucket, key, secret, cluster and HSM is DELETED with the stacks "
            "(make destroy). Never for real data."
        )
    return "kommunmoln: production mode: buckets, keys, cluster and HSMs are retained when the stacks are deleted."


def build_app(app: cdk.App, config: AppConfig) -> dict[str, cdk.Stack]:
    """Add every configured stack to `app` and attach the compliance packs.

    Returns the stacks by name. Makes no AWS calls: zones are explicit, and when an
    account is configured the zone look-up is answered from the config.
    """
    env = cdk.Environment(account=config.account or None, region=config.region)
    stacks: dict[str, cdk.Stack] = {}
    network = NetworkStack(
        app,
        names.network_stack_name(config.municipality_id),
        config=config,
        env=env,
        description=f"kommunmoln network for {config.municipality_name}: isolated VPC, endpoints, flow logs",
    )
    stacks[network.stack_name] = network
    # Use-case stacks are added here, each receiving the VPC as a constructor argument.
    if config.deploys(names.USE_CASE_CLIENT_SIDE):
        tier_a = TierAStack(
            app,
            names.tier_a_stack_name(config.municipality_id),
            config=config,
            network=network.network,
            env=env,
            description=f"kommunmoln tier A for {config.municipality_name}: client-side-encrypted bucket and validator",
        )
        stacks[tier_a.stack_name] = tier_a
    if config.deploys(names.USE_CASE_CLOUDHSM):
        tier_b = TierBStack(
            app,
            names.tier_b_stack_name(config.municipality_id),
            config=config,
            network=network.network,
            env=env,
            description=tier_b_description(config),
        )
        stacks[tier_b.stack_name] = tier_b
    if config.deploys(names.USE_CASE_EXTERNAL_KEY_STORE):
        tier_c = TierCStack(
            app,
            names.tier_c_stack_name(config.municipality_id),
            config=config,
            network=network.network,
            # Tier B's stack already puts a Secrets Manager endpoint into the shared VPC.
            secrets_manager_endpoint=not config.deploys(names.USE_CASE_CLOUDHSM),
            env=env,
            description=tier_c_description(config),
        )
        if config.deploys(names.USE_CASE_CLOUDHSM):
            tier_c.add_dependency(stacks[names.tier_b_stack_name(config.municipality_id)], "Secrets Manager endpoint")
        stacks[tier_c.stack_name] = tier_c

    for stack in stacks.values():
        cdk.Tags.of(stack).add(names.TAG_PROJECT, names.PROJECT)
        cdk.Tags.of(stack).add(names.TAG_MUNICIPALITY, config.municipality_id)
        if config.gallring_decision:
            # Under a gallring decision buckets and log groups expire records: each names the decision.
            cdk.Tags.of(stack).add(
                names.TAG_GALLRING_DECISION,
                config.gallring_decision,
                include_resource_types=["AWS::S3::Bucket", "AWS::Logs::LogGroup"],
            )
    if not config.lambda_reserved_concurrency:
        # Runs before synthesis writes the templates, so the validation plugins see the result.
        cdk.Aspects.of(app).add(WithoutReservedConcurrency(), priority=cdk.AspectPriority.MUTATING)
    add_compliance_packs(app, config)
    return stacks
