"""Deletion behaviour shared by every stateful construct."""

from __future__ import annotations

import aws_cdk as cdk


def removal_policy(*, workshop_mode: bool) -> cdk.RemovalPolicy:
    """Retain stateful resources unless the stack was deployed for a workshop.

    Information under the Secrecy Act must never disappear with a `cdk destroy`; a
    workshop, on the other hand, must be able to tear everything down in one command.
    """
    return cdk.RemovalPolicy.DESTROY if workshop_mode else cdk.RemovalPolicy.RETAIN
