#!/bin/bash
# kommunmoln-install-cloudhsm-cli [package]: install the CloudHSM CLI staged in the admin host's staging
# bucket, only if its SHA-256 is the one pinned in the config (tier_b_cloudhsm_cli_sha256).
#
# The package itself: its SHA-256, computed by the operator on the machine that downloaded it from AWS,
# is pinned in the template, so a package swapped in the staging bucket is refused. Its dependencies
# (glibc, OpenSSL, ...): dnf takes them from the Amazon Linux repository only (--repo amazonlinux) with
# gpgcheck=1, i.e. signed with the Amazon Linux key that ships in the AMI
# (/etc/pki/rpm-gpg/RPM-GPG-KEY-amazon-linux-2023). Fails closed: no pin, no install.
set -euo pipefail
. "${KOMMUNMOLN_ENV:-/etc/kommunmoln-cloudhsm.env}"
package="${1:-cloudhsm-cli.rpm}"
if ! [[ "${CLI_SHA256:-}" =~ ^[0-9a-f]{64}$ ]]; then
  echo "refusing: no SHA-256 of the CloudHSM CLI package is pinned (set tier_b_cloudhsm_cli_sha256, deploy)" >&2
  exit 3
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
aws s3 cp "s3://${STAGING_BUCKET}/${package}" "$work/cloudhsm-cli.rpm"
if ! echo "${CLI_SHA256}  $work/cloudhsm-cli.rpm" | sha256sum --check --strict --status; then
  echo "refusing: ${package} in the staging bucket does not have the pinned SHA-256 ${CLI_SHA256}" >&2
  exit 4
fi
dnf install -y --setopt=gpgcheck=1 --repo amazonlinux "$work/cloudhsm-cli.rpm"
