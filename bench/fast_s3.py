"""A minimal, fast local S3 endpoint for throughput benchmarks only (never for correctness).

    python -m bench.fast_s3 --port 0 --store DIR [--tls-dir DIR]

moto is the emulator for every test; it is also CPU-bound (about 100-130 MiB/s on this kind
of machine), which hides what the clients cost. This server does as little as an S3-speaking
server can: request bodies are read with `recv_into` into one reused buffer and written to
files in `--store` (the page cache holds them), GETs are served with `sendfile` over HTTP.
It answers only what the benchmark peers call: CreateBucket, PutObject, the multipart calls,
GetObject (with Range), HeadObject, ListObjectsV2, DeleteObject(s); user metadata is kept.
It checks no signature, no checksum and no permission. A PutObject's ETag is its MD5 (as on
S3; rclone checks it); part and multipart ETags are random.

With `--tls-dir` it serves HTTPS with a self-signed certificate for 127.0.0.1 generated at
start-up (written there as cert.pem, which clients use as their CA bundle).

botocore sends `aws-chunked` bodies with a trailing checksum over HTTPS (unsigned trailer);
those are decoded so that stored objects are the bytes the client meant.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import http.server
import ipaddress
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import sys
import threading
import urllib.parse
from pathlib import Path
from typing import Protocol
from xml.sax.saxutils import escape
from xml.sax.saxutils import unescape as _unescape

BUFFER = 1024 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
_XML = '<?xml version="1.0" encoding="UTF-8"?>\n'
_NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def write_self_signed(tls_dir: Path) -> tuple[Path, Path]:
    """A fresh P-256 key and a self-signed certificate for 127.0.0.1/localhost (benchmark only)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kommunmoln-bench-local")])
    now = _dt.datetime.now(_dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    tls_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = tls_dir / "cert.pem", tls_dir / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return cert_path, key_path


class Store:
    """Objects and multipart parts as files in one directory; names are opaque counters."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.Lock()
        self.objects: dict[tuple[str, str], tuple[Path, str, dict[str, str]]] = {}  # -> (file, etag, headers)
        self.uploads: dict[str, tuple[dict[str, str], dict[int, tuple[Path, str]]]] = {}  # id -> (headers, parts)
        self.buckets: set[str] = set()

    def new_path(self) -> Path:
        return self.root / secrets.token_hex(8)

    def put(self, bucket: str, key: str, path: Path, etag: str, headers: dict[str, str]) -> None:
        with self.lock:
            old = self.objects.get((bucket, key))
            self.objects[(bucket, key)] = (path, etag, headers)
        if old:
            old[0].unlink(missing_ok=True)

    def delete(self, bucket: str, key: str) -> None:
        with self.lock:
            old = self.objects.pop((bucket, key), None)
        if old:
            old[0].unlink(missing_ok=True)


def _etag() -> str:
    return f'"{secrets.token_hex(16)}"'


def _kept_headers(headers) -> dict[str, str]:
    """What S3 returns on GET: user metadata (the S3 Encryption Client keeps its envelope there)."""
    return {k: v for k, v in headers.items() if k.lower().startswith("x-amz-meta-") or k.lower() == "content-type"}


class _Source(Protocol):
    def readinto(self, buffer: memoryview, /) -> int: ...
    def readline(self, limit: int = -1, /) -> bytes: ...


class _Limited:
    """At most `remaining` bytes of `source` (a Content-Length body)."""

    def __init__(self, source: _Source, remaining: int) -> None:
        self._source, self._remaining = source, remaining

    def readinto(self, buffer: memoryview) -> int:
        if not self._remaining:
            return 0
        got = self._source.readinto(buffer[: min(self._remaining, len(buffer))])
        if not got:
            raise ConnectionError("client closed the connection mid-body")
        self._remaining -= got
        return got

    def readline(self, limit: int = -1) -> bytes:
        raise NotImplementedError


class _Chunked:
    """Decodes `size[;ext]CRLF data CRLF ... 0 CRLF trailers CRLF`: HTTP/1.1 chunked and aws-chunked alike."""

    def __init__(self, source: _Source) -> None:
        self._source = source
        self._left = 0  # bytes left in the current chunk
        self._done = False
        self._pending = b""  # bytes read by a line read that belong to the decoded stream

    def _line(self) -> bytes:
        line = self._source.readline(65537)
        if not line.endswith(b"\r\n"):
            raise ConnectionError("malformed chunked body")
        return line[:-2]

    def readinto(self, buffer: memoryview) -> int:
        if self._done:
            return 0
        if not self._left:
            self._left = int(self._line().split(b";", 1)[0], 16)
            if self._left == 0:
                while self._line():  # trailers (x-amz-checksum-*), then the empty line
                    pass
                self._done = True
                return 0
        got = self._source.readinto(buffer[: min(self._left, len(buffer))])
        if not got:
            raise ConnectionError("client closed the connection mid-chunk")
        self._left -= got
        if not self._left and self._line():
            raise ConnectionError("malformed chunked body")
        return got

    def readline(self, limit: int = -1) -> bytes:
        """One line of the decoded stream (the inner aws-chunked framing reads its sizes so)."""
        line = bytearray()
        one = memoryview(bytearray(1))
        while not line.endswith(b"\n") and (limit < 0 or len(line) < limit):
            if not self.readinto(one):
                break
            line += one
        return bytes(line)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kommunmoln-bench-s3"
    store: Store
    use_sendfile = True

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: logging costs CPU the benchmark should not pay

    # --- helpers ---------------------------------------------------------------------------
    def _target(self) -> tuple[str, str, dict[str, list[str]]]:
        url = urllib.parse.urlsplit(self.path)
        bucket, _, key = url.path.lstrip("/").partition("/")
        return bucket, urllib.parse.unquote(key), urllib.parse.parse_qs(url.query, keep_blank_values=True)

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _xml(self, body: str, status: int = 200) -> None:
        self._reply(status, (_XML + body).encode(), {"Content-Type": "application/xml"})

    def _error(self, status: int, code: str) -> None:
        self._xml(f"<Error><Code>{code}</Code><Message>{code}</Message></Error>", status)

    def _receive_body(self, path: Path, digest=None) -> None:
        """The request body into `path`: decoded from HTTP chunked and aws-chunked framing as sent."""
        buffer = memoryview(bytearray(BUFFER))
        source: _Source = self.rfile
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            source = _Chunked(self.rfile)
        elif "Content-Length" in self.headers:
            source = _Limited(self.rfile, int(self.headers["Content-Length"]))
        if "aws-chunked" in self.headers.get("Content-Encoding", ""):
            source = _Chunked(source)
        with open(path, "wb") as out:
            while got := source.readinto(buffer):
                out.write(buffer[:got])
                if digest is not None:
                    digest.update(buffer[:got])

    # --- requests --------------------------------------------------------------------------
    def do_PUT(self) -> None:
        bucket, key, query = self._target()
        if not key:
            self._drain()
            self.store.buckets.add(bucket)
            self._reply(200, headers={"Location": f"/{bucket}"})
            return
        path = self.store.new_path()
        if "uploadId" in query:
            self._receive_body(path)
            etag = _etag()  # no client checks a part's ETag against its bytes
            upload = self.store.uploads.get(query["uploadId"][0])
            if upload is None:
                path.unlink()
                self._error(404, "NoSuchUpload")
                return
            upload[1][int(query["partNumber"][0])] = (path, etag)
        else:
            # A single PutObject's ETag is the body's MD5 on S3, and rclone checks it.
            digest = hashlib.md5(usedforsecurity=False)
            self._receive_body(path, digest)
            etag = f'"{digest.hexdigest()}"'
            self.store.put(bucket, key, path, etag, _kept_headers(self.headers))
        self._reply(200, headers={"ETag": etag})

    def _drain(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_POST(self) -> None:
        bucket, key, query = self._target()
        body = self._drain()
        if "uploads" in query:
            upload_id = secrets.token_hex(16)
            self.store.uploads[upload_id] = (_kept_headers(self.headers), {})
            self._xml(
                f"<InitiateMultipartUploadResult {_NS}><Bucket>{escape(bucket)}</Bucket><Key>{escape(key)}</Key>"
                f"<UploadId>{upload_id}</UploadId></InitiateMultipartUploadResult>"
            )
        elif "uploadId" in query:
            self._complete(bucket, key, query["uploadId"][0], body)
        elif "delete" in query:
            keys = [_unescape(k.decode()) for k in re.findall(rb"<Key>(.*?)</Key>", body)]
            for item in keys:
                self.store.delete(bucket, item)
            deleted = "".join(f"<Deleted><Key>{escape(k)}</Key></Deleted>" for k in keys)
            self._xml(f"<DeleteResult {_NS}>{deleted}</DeleteResult>")
        else:
            self._error(400, "NotImplemented")

    def _complete(self, bucket: str, key: str, upload_id: str, body: bytes) -> None:
        upload = self.store.uploads.pop(upload_id, None)
        if upload is None:
            self._error(404, "NoSuchUpload")
            return
        headers, parts = upload
        wanted = [int(n) for n in re.findall(rb"<PartNumber>(\d+)</PartNumber>", body)]
        target = self.store.new_path()
        with open(target, "wb") as out:
            for number in wanted:
                with open(parts[number][0], "rb") as part:
                    size = os.fstat(part.fileno()).st_size
                    copied = 0
                    while copied < size:  # in the kernel: no copy through this process
                        copied += os.copy_file_range(part.fileno(), out.fileno(), size - copied)
        for path, _ in parts.values():
            path.unlink(missing_ok=True)
        etag = f'"{secrets.token_hex(16)}-{len(wanted)}"'
        self.store.put(bucket, key, target, etag, headers)
        self._xml(
            f"<CompleteMultipartUploadResult {_NS}><Bucket>{escape(bucket)}</Bucket><Key>{escape(key)}</Key>"
            f"<ETag>{escape(etag)}</ETag></CompleteMultipartUploadResult>"
        )

    def do_DELETE(self) -> None:
        bucket, key, query = self._target()
        if "uploadId" in query:
            _, parts = self.store.uploads.pop(query["uploadId"][0], ({}, {}))
            for path, _ in parts.values():
                path.unlink(missing_ok=True)
        elif key:
            self.store.delete(bucket, key)
        self._reply(204)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        bucket, key, query = self._target()
        if not key:
            self._list(bucket, query)
            return
        found = self.store.objects.get((bucket, key))
        if found is None:
            self._error(404, "NoSuchKey")
            return
        path, etag, headers = found
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            start, end, status = 0, size - 1, 200
            match = _RANGE.match(self.headers.get("Range", ""))
            if match:
                first, last = match.groups()
                start = int(first) if first else max(0, size - int(last))
                end = min(size - 1, int(last)) if first and last else size - 1
                status = 206
            self.send_response(status)
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("ETag", etag)
            for name, value in {"Content-Type": "application/octet-stream", **headers}.items():
                self.send_header(name, value)
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if self.command == "HEAD":
                return
            self.wfile.flush()
            self._send_file(handle, start, end - start + 1)

    def _send_file(self, handle, offset: int, count: int) -> None:
        if self.use_sendfile:
            while count > 0:
                sent = os.sendfile(self.connection.fileno(), handle.fileno(), offset, min(count, 1 << 30))
                if sent == 0:
                    raise ConnectionError("client went away")
                offset, count = offset + sent, count - sent
            return
        buffer = memoryview(bytearray(BUFFER))
        handle.seek(offset)
        while count > 0:
            got = handle.readinto(buffer[: min(count, BUFFER)])
            if not got:
                raise ConnectionError("object file shrank")
            self.connection.sendall(buffer[:got])
            count -= got

    def _list(self, bucket: str, query: dict[str, list[str]]) -> None:
        prefix = query.get("prefix", [""])[0]
        with self.store.lock:
            items = sorted((k, p, e) for (b, k), (p, e, _) in self.store.objects.items() if b == bucket)
        contents = "".join(
            f"<Contents><Key>{escape(k)}</Key><Size>{p.stat().st_size}</Size><ETag>{escape(e)}</ETag>"
            f"<LastModified>2026-01-01T00:00:00.000Z</LastModified><StorageClass>STANDARD</StorageClass></Contents>"
            for k, p, e in items
            if k.startswith(prefix)
        )
        self._xml(
            f"<ListBucketResult {_NS}><Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>"
            f"<KeyCount>{contents.count('<Contents>')}</KeyCount><MaxKeys>1000</MaxKeys>"
            f"<IsTruncated>false</IsTruncated>{contents}</ListBucketResult>"
        )


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


def serve(port: int, store_dir: Path, tls_dir: Path | None) -> None:
    store_dir.mkdir(parents=True, exist_ok=True)
    handler = type("BoundHandler", (Handler,), {"store": Store(store_dir), "use_sendfile": tls_dir is None})
    server = Server(("127.0.0.1", port), handler)
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    scheme = "http"
    if tls_dir is not None:
        cert, key = write_self_signed(tls_dir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    print(f"{scheme}://127.0.0.1:{server.server_address[1]}", flush=True)  # the parent waits for this line
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        shutil.rmtree(store_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--store", type=Path, required=True, help="directory for object bodies (removed at exit)")
    parser.add_argument("--tls-dir", type=Path, default=None, help="serve HTTPS; cert.pem is written here")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))  # run the clean-up
    serve(args.port, args.store, args.tls_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
