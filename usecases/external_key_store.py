"""Tier C operator tool: run the XKS proxy, create its keys in the HSM, flip the kill switch.

python -m usecases.external_key_store serve --config proxy.toml
python -m usecases.external_key_store create-keys --config proxy.toml
python -m usecases.external_key_store kill --config proxy.toml --all | --key ID [--key ID ...]
python -m usecases.external_key_store revive --config proxy.toml --all | --key ID
python -m usecases.external_key_store status --config proxy.toml
python -m usecases.external_key_store verify-audit --config proxy.toml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kommunmoln.tier_c.audit import verify_chain
from kommunmoln.tier_c.config import ConfigError, load_config
from kommunmoln.tier_c.killswitch import KillState, read_state, write_state


def _create_keys(config) -> int:
    from kommunmoln.tier_c.hsm import create_aes_key

    labels = [config.health_key_label] + [rule.label for rule in config.keys.values()]
    for label in labels:
        made = create_aes_key(
            library=config.pkcs11_library, token_label=config.token_label, pin=config.hsm_pin(), label=label
        )
        print(f"{'created' if made else 'exists '}  {label}  (AES-256, non-extractable, sensitive)")
    return 0


def _kill(config, args, *, revive: bool) -> int:
    current = read_state(config.kill_switch_file)
    if current.broken and not args.all:
        print(f"error: {config.kill_switch_file} is unreadable; fix it or use --all", file=sys.stderr)
        return 2
    unknown = [k for k in args.key if k not in config.keys]
    if unknown:
        print(f"error: unknown external key id(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    if revive:
        state = KillState() if args.all else KillState(current.all_keys, current.keys - set(args.key))
    else:
        state = KillState(True, current.keys) if args.all else KillState(current.all_keys, current.keys | set(args.key))
    write_state(config.kill_switch_file, state)
    print(_describe(state))
    return 0


def _describe(state: KillState) -> str:
    if state.broken:
        return "kill switch: state file unreadable -> every request refused"
    if state.all_keys:
        return "kill switch: ALL keys refused"
    return f"kill switch: refused keys: {', '.join(sorted(state.keys)) or 'none'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m usecases.external_key_store", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("serve", "create-keys", "kill", "revive", "status", "verify-audit"):
        p = sub.add_parser(name)
        p.add_argument("--config", required=True, type=Path)
        if name in ("kill", "revive"):
            group = p.add_mutually_exclusive_group(required=True)
            group.add_argument("--all", action="store_true", help="every key (and health)")
            group.add_argument("--key", action="append", default=[], help="an external key id (repeatable)")
    args = parser.parse_args(argv)
    if getattr(args, "key", None) is None:
        args.key = []
    try:
        config = load_config(args.config, secrets=args.command in ("serve", "create-keys"))
        if args.command == "serve":
            from kommunmoln.tier_c.server import serve

            serve(config)
            return 0
        if args.command == "create-keys":
            return _create_keys(config)
        if args.command in ("kill", "revive"):
            return _kill(config, args, revive=args.command == "revive")
        if args.command == "status":
            print(_describe(read_state(config.kill_switch_file)))
            return 0
        lines, broken = verify_chain(config.audit_log)
        print(f"{lines} lines; " + ("chain intact" if broken is None else f"chain BROKEN at line {broken}"))
        return 0 if broken is None else 1
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
