"""The tier C operator commands: run the XKS proxy, create its keys in the HSM, flip the kill switch.

    kommunmoln xks COMMAND --config proxy.toml ...            (installed: pip install 'kommunmoln[xks]')
    python -m usecases.external_key_store COMMAND --config ... (from a clone; the same parser and code)

Commands:
  serve         run the proxy until SIGTERM/SIGINT (graceful drain, then exit 0)
  create-keys   create the configured AES-256 keys (and the health key) in the token
  kill          refuse every request (--all) or the requests for some keys (--key ID ...), from the next request on
  revive        undo kill (--all: everything; --key ID: that key)
  status        what the kill switch refuses now
  verify-audit  check the audit log's hash chain

Exit codes: 0 success, 1 the audit chain is broken or the HSM failed, 2 bad input (missing or bad configuration,
unset PIN or secret variable, unknown key id, missing optional dependencies). Errors are one
line on stderr, never a traceback, never a secret. `kill`, `revive`, `status` and `verify-audit`
need neither the SigV4 secrets nor the HSM PIN nor the `[xks]` extra, so an operator can cut
AWS off from any shell that can write the kill-switch file.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import ssl
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from kommunmoln.tier_a.errors import TierAError
from kommunmoln.tier_c.audit import AuditLog, verify_chain
from kommunmoln.tier_c.config import ConfigError, ProxyConfig, load_config
from kommunmoln.tier_c.hsm import HsmError
from kommunmoln.tier_c.killswitch import KillState, read_state, write_state

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
INSTALL_HINT = "pip install 'kommunmoln[xks]'"
# What each command needs beyond the base install (the `[xks]` extra in pyproject.toml).
NEEDS: dict[str, tuple[str, ...]] = {"serve": ("pkcs11", "uvicorn", "h11"), "create-keys": ("pkcs11",)}
EPILOG = __doc__[__doc__.index("Exit codes:") :]
HELP = {
    "serve": "run the proxy until SIGTERM/SIGINT (graceful drain)",
    "create-keys": "create the configured AES-256 keys and the health key in the token (non-extractable)",
    "kill": "refuse every request (--all) or those for some keys (--key ID), from the next request on",
    "revive": "undo kill (--all: everything; --key ID: that key)",
    "status": "show what the kill switch refuses now",
    "verify-audit": "check the audit log's hash chain (exit 1 if broken)",
}


class MissingExtra(Exception):
    """A command needs a package of the `[xks]` extra that is not installed."""


class _Stop(Exception):
    """SIGTERM or SIGINT after the server drained: a normal stop."""


def add_commands(parser: argparse.ArgumentParser) -> None:
    """Add the tier C commands as subcommands of `parser` (the `xks` group or the repository script)."""
    commands = parser.add_subparsers(dest="xks_command", required=True, metavar="COMMAND")
    for name, help_text in HELP.items():
        sub = commands.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        sub.add_argument("--config", required=True, type=Path, metavar="FILE", help="the proxy's TOML configuration")
        if name in ("kill", "revive"):
            group = sub.add_mutually_exclusive_group(required=True)
            group.add_argument("--all", action="store_true", help="every key (and health)")
            group.add_argument("--key", dest="key_ids", action="append", default=[], metavar="ID",
                               help="an external key id (repeatable)")  # fmt: skip


def register(commands: argparse._SubParsersAction, handlers: dict[str, Callable[[argparse.Namespace], int]]) -> None:
    """Add `xks` (with the commands above) to the `kommunmoln` command line."""
    parser = commands.add_parser(
        "xks",
        help="tier C: the External Key Store proxy (serve, create-keys, kill, revive, status, verify-audit)",
        description=__doc__.splitlines()[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    add_commands(parser)
    handlers["xks"] = run


def run(args: argparse.Namespace) -> int:
    """Run one parsed tier C command; returns the exit code (errors: one line on stderr)."""
    command = args.xks_command
    try:
        _require(NEEDS.get(command, ()))
        config = load_config(args.config, secrets=command in ("serve", "create-keys"))
        if command == "serve":
            return _serve(config)
        if command == "create-keys":
            return _create_keys(config)
        if command in ("kill", "revive"):
            return _kill(config, all_keys=args.all, key_ids=args.key_ids, revive=command == "revive")
        if command == "status":
            print(describe(read_state(config.kill_switch_file)))
            return EXIT_OK
        try:
            lines, broken = verify_chain(config.audit_log)
        except OSError as error:
            raise ConfigError(f"audit.path: cannot read {config.audit_log} ({error.strerror})") from None
        print(f"{lines} lines; " + ("chain intact" if broken is None else f"chain BROKEN at line {broken}"))
        return EXIT_OK if broken is None else EXIT_FAILED
    except (ConfigError, MissingExtra) as error:
        return _error(error, EXIT_USAGE)
    except (HsmError, TierAError) as error:  # the token cannot be opened or used (tier A's handle creates keys)
        return _error(error, EXIT_FAILED)


def _error(error: Exception, code: int) -> int:
    print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None, *, prog: str = "kommunmoln xks") -> int:
    """The tier C commands on their own (the repository script); never raises SystemExit."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0], epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)  # fmt: skip
    add_commands(parser)
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exit_:  # --help (0) or a usage error (2)
        return int(exit_.code or 0)
    return run(args)


def describe(state: KillState) -> str:
    if state.broken:
        return "kill switch: state file unreadable -> every request refused"
    if state.all_keys:
        return "kill switch: ALL keys refused"
    return f"kill switch: refused keys: {', '.join(sorted(state.keys)) or 'none'}"


def _require(modules: Sequence[str]) -> None:
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise MissingExtra(f"this command needs {', '.join(missing)}, which is not installed: {INSTALL_HINT}")


def _check_tls(config: ProxyConfig) -> None:
    """Load the certificate and key once before the HSM is opened: a missing or bad file is one line, not a traceback.

    The configuration has no key passphrase, so an encrypted key is refused here too (uvicorn would
    otherwise ask for it on a terminal a service does not have). The message names paths, never contents.
    """
    if config.plain_http_for_tests:
        return
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(
            config.tls_certificate, config.tls_private_key, password=b""
        )
    except (OSError, ssl.SSLError) as error:
        reason = getattr(error, "reason", None) or error.strerror or type(error).__name__
        raise ConfigError(
            f"server.tls_certificate/server.tls_private_key: cannot use {config.tls_certificate} with "
            f"{config.tls_private_key} ({reason})"
        ) from None


def _check_audit_log(config: ProxyConfig) -> None:
    """Open the audit log for appending (as the proxy will) before the HSM is opened: no log, no proxy."""
    try:
        AuditLog(config.audit_log).close()
    except OSError as error:
        raise ConfigError(f"audit.path: cannot append to {config.audit_log} ({error.strerror})") from None


def _serve(config: ProxyConfig) -> int:
    from kommunmoln.tier_c.server import serve

    _check_audit_log(config)
    _check_tls(config)

    # uvicorn drains open requests on SIGTERM/SIGINT and then re-raises the signal to the handler
    # it found: make that a normal stop (exit 0), not a KeyboardInterrupt or the client's
    # "interrupted" message.
    def stop(signum: int, frame: object) -> None:
        raise _Stop

    previous = {number: signal.signal(number, stop) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        serve(config)
    except _Stop:
        print("xks proxy stopped", file=sys.stderr)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return EXIT_OK


def _create_keys(config: ProxyConfig) -> int:
    from kommunmoln.tier_c.hsm import create_aes_key

    pin = config.hsm_pin()
    for label in [config.health_key_label] + [rule.label for rule in config.keys.values()]:
        made = create_aes_key(library=config.pkcs11_library, token_label=config.token_label, pin=pin, label=label)
        print(f"{'created' if made else 'exists '}  {label}  (AES-256, non-extractable, sensitive)")
    return EXIT_OK


def _kill(config: ProxyConfig, *, all_keys: bool, key_ids: Sequence[str], revive: bool) -> int:
    current = read_state(config.kill_switch_file)
    if current.broken and not all_keys:
        raise ConfigError(f"{config.kill_switch_file} is unreadable; fix it or use --all")
    unknown = [k for k in key_ids if k not in config.keys]
    if unknown:
        raise ConfigError(f"unknown external key id(s): {', '.join(unknown)}")
    chosen = frozenset(key_ids)
    if revive:
        state = KillState() if all_keys else KillState(current.all_keys, current.keys - chosen)
    else:
        state = KillState(True, current.keys) if all_keys else KillState(current.all_keys, current.keys | chosen)
    write_state(config.kill_switch_file, state)
    print(describe(state))
    return EXIT_OK
