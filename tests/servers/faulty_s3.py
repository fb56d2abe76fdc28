"""A deliberately unhealthy S3 endpoint: answers 503 SlowDown (or 500) to the first N
requests, then behaves as an empty bucket. Counts the requests it receives.

Enough to prove the S3 client retries throttling and 5xx, and what happens when the
retries run out; real S3 behaviour (storage) is tested against SeaweedFS elsewhere.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_ERRORS = {
    503: b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
    500: b"<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>",
}
_NOT_FOUND = (
    b"<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>"
)
_EMPTY_LIST = (
    b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult>'
    b"<IsTruncated>false</IsTruncated><KeyCount>0</KeyCount></ListBucketResult>"
)


@dataclass
class FaultyS3:
    url: str
    server: ThreadingHTTPServer

    @property
    def requests(self) -> int:
        return self.server.requests  # type: ignore[attr-defined,no-any-return]


@contextmanager
def faulty_s3(failures: int, status: int = 503) -> Iterator[FaultyS3]:
    """Serve on 127.0.0.1 (a free port) until the block ends."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            with self.server.lock:  # type: ignore[attr-defined]
                self.server.requests += 1  # type: ignore[attr-defined]
                n = self.server.requests  # type: ignore[attr-defined]
            if n <= failures:
                code, body = status, _ERRORS[status]
            elif self.command == "GET" and "list-type=2" in self.path:
                code, body = 200, _EMPTY_LIST  # an empty bucket
            else:
                code, body = 404, _NOT_FOUND
            self.send_response(code)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(0 if self.command == "HEAD" else len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _answer

        def log_message(self, *_args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.requests = 0  # type: ignore[attr-defined]
    server.lock = threading.Lock()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FaultyS3(f"http://127.0.0.1:{server.server_address[1]}", server)
    finally:
        server.shutdown()
        server.server_close()
