"""The key provisioner's deployment environment (see tests/controlplane/conftest.py)."""

from tests.controlplane.conftest import deployed_key_policy  # noqa: F401
