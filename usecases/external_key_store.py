"""Tier C operator tool from a clone: the same commands as `kommunmoln xks` (kommunmoln/tier_c/cli.py).

python -m usecases.external_key_store serve --config proxy.toml
python -m usecases.external_key_store create-keys --config proxy.toml
python -m usecases.external_key_store kill --config proxy.toml --all | --key ID [--key ID ...]
python -m usecases.external_key_store revive --config proxy.toml --all | --key ID
python -m usecases.external_key_store status --config proxy.toml
python -m usecases.external_key_store verify-audit --config proxy.toml
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from kommunmoln.tier_c import cli

PROG = "python -m usecases.external_key_store"


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
