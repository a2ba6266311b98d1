"""The local AWS emulation (moto) used by the demos and the tests: no account, loopback only."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator, Mapping


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def moto_server(endpoint_url: str | None = None) -> Iterator[str]:
    """Yield `endpoint_url` if given, else start an in-process moto server and yield its URL.

    The server listens on 127.0.0.1 only and stops when the block ends.
    """
    if endpoint_url:
        yield endpoint_url
        return
    from moto.server import ThreadedMotoServer  # imported late: a test-and-demo dependency

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log lines in demo output
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@contextlib.contextmanager
def temporary_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block and restore the previous values after it."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
