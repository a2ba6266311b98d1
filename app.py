#!/usr/bin/env python3
"""CDK entry point: cdk.json context -> validated AppConfig -> stacks.

A bad setting ends synthesis with one line naming the context key, not a stack trace.
"""

from __future__ import annotations

import sys

import aws_cdk as cdk

from kommunmoln.config import ConfigError, load_config
from stacks.app_builder import (
    build_app,
    workshop_notice,
)


def main() -> None:
    app = cdk.App()
    try:
        config = load_config(app.node.get_all_context())
    except ConfigError as error:
        print(f"kommunmoln: configuration error: {error}", file=sys.stderr)
        sys.exit(2)
    if config.account:
        # Answer CDK's zone look-up from the config so that synthesis never calls AWS.
        app.node.set_context(
            f"availability-zones:account={config.account}:region={config.region}", list(config.availability_zones)
        )
    print(workshop_notice(config), file=sys.stderr)
    build_app(app, config)
    try:
        app.synth()
    except RuntimeError as error:
        if "ValidationFailed" not in str(error):
            raise
        # The findings were printed above, one block each; end with one line, not a trace.
        print(f"kommunmoln: compliance gates failed (see the findings above): {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
