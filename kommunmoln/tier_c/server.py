"""Serving the proxy with uvicorn: TLS 1.2+ (or plain HTTP behind an explicit test flag), graceful shutdown.

Why uvicorn: it is a maintained, widely deployed ASGI server (encode/uvicorn) on the pure-Python
h11 HTTP/1.1 parser, handles SIGTERM/SIGINT with a graceful drain, supports keep-alive (KMS
reuses connections) and takes an ssl context we can pin to TLS 1.2+. The proxy runs one
process: PKCS#11 sessions belong to the process, and the HSM, not Python, does the cryptography;
scale out by running two or more proxies behind a load balancer (docs/use-case-3.md).
"""

from __future__ import annotations

import ssl

from kommunmoln.tier_c.app import XksProxy
from kommunmoln.tier_c.config import ConfigError, ProxyConfig
from kommunmoln.tier_c.hsm import HsmPool

# The spec's cipher suites for TLS 1.2 (TLS 1.3 suites are always enabled by OpenSSL).
TLS12_CIPHERS = "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384"


def build_proxy(config: ProxyConfig) -> XksProxy:
    """Open the HSM session pool and build the ASGI app (fails if the HSM or its health key is missing)."""
    pool = HsmPool(
        library=config.pkcs11_library,
        token_label=config.token_label,
        pin=config.hsm_pin(),
        size=config.session_pool_size,
    )
    if not pool.has_key(config.health_key_label):
        pool.close()
        raise ConfigError(
            f"hsm.health_key_label: no key {config.health_key_label!r} on the token (run `create-keys` first)"
        )
    return XksProxy(config, pool)


def uvicorn_config(config: ProxyConfig, app: XksProxy):
    """A loaded uvicorn.Config whose SSL context refuses anything older than TLS 1.2."""
    import uvicorn

    kwargs = {}
    if not config.plain_http_for_tests:
        kwargs = {
            "ssl_certfile": str(config.tls_certificate),
            "ssl_keyfile": str(config.tls_private_key),
            "ssl_version": ssl.PROTOCOL_TLS_SERVER,
            "ssl_ciphers": TLS12_CIPHERS,
        }
    server_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        lifespan="on",
        access_log=False,  # the audit log records every request; no second, unchained log
        log_level="warning",
        timeout_keep_alive=60,
        timeout_graceful_shutdown=10,
        h11_max_incomplete_event_size=16384,  # bounds the header block
        limit_concurrency=config.max_concurrent_requests * 2,
        server_header=False,
        proxy_headers=False,  # KMS connects directly (or through an NLB, which keeps the source address)
        **kwargs,
    )
    server_config.load()
    if server_config.ssl is not None:
        server_config.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
    return server_config


def serve(config: ProxyConfig) -> None:
    """Run until SIGTERM/SIGINT; uvicorn drains open requests, then lifespan shutdown closes the HSM pool."""
    import uvicorn

    app = build_proxy(config)
    uvicorn.Server(uvicorn_config(config, app)).run()
