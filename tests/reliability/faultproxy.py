"""A small fault-injecting HTTP proxy on 127.0.0.1, in front of the local moto server.

    with FaultProxy(upstream="http://127.0.0.1:5000") as proxy:
        proxy.add(Fault(match=is_upload_part, nth=2, action="status", status=503, code="SlowDown"))
        client = boto3.client("s3", endpoint_url=proxy.url, ...)

Each request is matched against the faults in order; a fault fires on the `nth` matching
request (and the `times - 1` after it; `times=None` = forever). Actions:
- "status": answer with an S3-style XML error (e.g. 500 InternalError, 503 SlowDown)
  without forwarding;
- "drop-request": read the request, then close the connection without answering;
- "cut-response": forward, then send the response headers and only `after` bytes of the
  body before closing the connection (a connection dropped mid-download);
- "slow-response": forward, then send the body at `rate` bytes per second (to kill a
  client process mid-transfer);
- "delay": wait `delay` seconds, then forward (a slow request).
Everything is logged in `proxy.log` (method, path, query, headers subset, action).
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body_length: int

    @property
    def operation(self) -> str:
        """A rough S3 operation name from method and query (enough to aim faults)."""
        q = self.query
        if self.method == "PUT" and "partNumber" in q:
            return "UploadPart"
        if self.method == "POST" and "uploads" in q:
            return "CreateMultipartUpload"
        if self.method == "POST" and "uploadId" in q:
            return "CompleteMultipartUpload"
        if self.method == "DELETE" and "uploadId" in q:
            return "AbortMultipartUpload"
        if self.method == "GET" and "uploadId" in q:
            return "ListParts"
        if self.method == "PUT" and "tagging" in q:
            return "PutObjectTagging"
        if self.method == "GET" and "tagging" in q:
            return "GetObjectTagging"
        if self.method == "PUT":
            return "PutObject"
        if self.method == "GET" and self.path.strip("/").count("/") >= 1:
            return "GetObject"
        if self.method == "HEAD":
            return "HeadObject"
        return f"{self.method}"


@dataclass
class Fault:
    match: Callable[[Request], bool]
    action: str  # status | drop-request | cut-response | slow-response | delay
    delay: float = 0.0
    nth: int = 1
    times: int | None = 1
    status: int = 503
    code: str = "SlowDown"
    after: int = 0
    rate: int = 256 * 1024
    seen: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)

    def fires(self, request: Request) -> bool:
        if not self.match(request):
            return False
        self.seen += 1
        if self.seen < self.nth:
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        self.fired += 1
        return True


def operation(name: str) -> Callable[[Request], bool]:
    return lambda request: request.operation == name


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        body = self._read_body()
        parsed = urllib.parse.urlsplit(self.path)
        request = Request(
            self.command,
            parsed.path,
            urllib.parse.parse_qs(parsed.query, keep_blank_values=True),
            {k: v for k, v in self.headers.items()},
            len(body),
        )
        fault = self.server.proxy.pick(request)
        self.server.proxy.log.append((request, fault.action if fault else "forward"))
        if fault and fault.action == "status":
            xml = (
                f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{fault.code}</Code>'
                f"<Message>injected by faultproxy</Message><RequestId>fault</RequestId></Error>"
            ).encode()
            self.send_response(fault.status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(xml)))
            self.end_headers()
            self.wfile.write(xml)
            return
        if fault and fault.action == "drop-request":
            self._abort_connection()
            return
        if fault and fault.action == "delay":
            time.sleep(fault.delay)
        upstream = http.client.HTTPConnection(
            self.server.proxy.upstream_host, self.server.proxy.upstream_port, timeout=60
        )
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        upstream.request(
            self.command, self.path, body=body if body or self.command in ("PUT", "POST") else None, headers=headers
        )
        response = upstream.getresponse()
        payload = response.read()
        upstream.close()
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if fault and fault.action == "cut-response":
            self.wfile.write(payload[: fault.after])
            self.wfile.flush()
            self._abort_connection()
            return
        if fault and fault.action == "slow-response":
            step = max(1, fault.rate // 20)
            for start in range(0, len(payload), step):
                try:
                    self.wfile.write(payload[start : start + step])
                    self.wfile.flush()
                except OSError:
                    self.close_connection = True
                    return
                time.sleep(step / fault.rate)
            return
        self.wfile.write(payload)

    def _abort_connection(self) -> None:
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close_connection = True

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: FaultProxy


class FaultProxy:
    """The proxy: `url` to give clients, `add()` faults, `log` of what it saw."""

    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or 80
        self.faults: list[Fault] = []
        self.log: list[tuple[Request, str]] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="faultproxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        """Remove every fault: requests pass through untouched again."""
        with self._lock:
            self.faults.clear()

    def pick(self, request: Request) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.fires(request):
                    return fault
        return None

    def operations(self) -> list[str]:
        return [request.operation for request, _ in self.log]

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
