"""A LibInsight-compatible local server for the demo and the tests.

Speaks the v1.0 API the pipeline uses: ``POST /v1.0/oauth/token`` (client credentials as
form fields or HTTP Basic) and ``GET /v1.0/custom-dataset/{id}/data-grid`` with
``from``/``to``/``page`` and the ``{"type": "success", "payload": {...}}`` envelope.
Records are realistic and deterministic (same seed, same records) and carry the known
quirks: single choices as one-element arrays, multi-selects, numbers as strings, newlines
and mojibake in free text, an occasional record without ``_start_date``.

Several datasets (``dataset_ids``; ``profiles`` gives a dataset other fields: the
``instruction`` profile is an instruction log), fields an instance lacks (``omit_fields``)
and a dataset that went quiet (``quiet_after``) model an instance as it is. Switches
(attributes of :class:`ServerSettings`, changeable while running) inject
latency, 429 bursts with ``Retry-After``, 500 bursts, token expiry (by time or after N
uses, as a 401 or as an error envelope), ``type: error`` with HTTP 200, renamed fields and
late edits, and bad bodies (``bad_pages``: HTML with HTTP 200, truncated JSON, a missing
payload or total, a page repeating page 1...; ``rewrite``: any edit of a page); ``echo``
puts the request (Authorization header, body) into every error message. The server also keeps a request log so tests can assert what the *server*
saw (each page served once, the wait after a 429), not what the wall clock says.

Run it: ``python -m edulake.demo.libinsight_server --port 8765``; in tests use
``with LibInsightServer(ServerSettings(...)) as server: server.base_url``.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import functools
import json
import math
import os
import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEMO_CLIENT_ID = "edulake-demo-client"
# Public, labelled demo credential of the local server: protects nothing by design.
DEMO_CLIENT_SECRET = "demo-secret-of-the-local-libinsight-server"  # noqa: S105
DEMO_DATASET_ID = 12345

_STAFF = ["Maria Lopez", "Jamal Carter", "Anne O'Neil", "Wei Zhang", "Priya Natarajan", "Tom Berg"]
_QTYPES = ["Reference", "Directional", "Technical", "Policy/Procedure", "Research Consultation"]
_PATRONS = ["Undergraduate", "Graduate", "Faculty", "Staff", "Community"]
_FORMATS = ["In person", "Chat", "Email", "Phone"]
_TOPICS = ["Databases", "Citations", "Catalog", "Printing", "Interlibrary Loan", "Course Reserves"]
_RESEARCH = ["History", "Biology", "Nursing", "Economics", "Education", "Engineering", ""]
_TOPIC_TEXT = [
    "finding articles",
    "citation help",
    "thesis sources",
    "data sets",
    "primary sources",
]
_COMMENTS = [
    "",
    "Helped with JSTOR search.",
    "Patron didn\u00e2\u20ac\u2122t have a login;\nsent to IT desk.",  # mojibake, as exported
    "Walked to stacks.\r\nFollow-up by email.",
    "Caf\u00e9 hours question",
    'Showed "Find It" button',
]


@dataclass
class ServerSettings:
    """Behaviour switches of the local server (mutable while it runs)."""

    client_id: str = DEMO_CLIENT_ID
    client_secret: str = field(default=DEMO_CLIENT_SECRET, repr=False)
    dataset_ids: tuple[int, ...] = (DEMO_DATASET_ID,)
    seed: int = 7
    records_per_day: int = 6  # average; exact when fixed_daily
    fixed_daily: bool = False
    page_size: int = 100
    latency_s: float = 0.0  # added to every data-grid response
    token_ttl_s: int = 3600  # announced expires_in and enforced
    token_max_uses: int | None = None  # refuse a token after N data requests
    expired_style: str = "401"  # "401" or "envelope" (type: error with HTTP 200)
    burst_429: int = 0  # the next N data-grid requests get 429
    retry_after_s: int = 1
    burst_500: int = 0  # the next N data-grid requests get 500
    error_200: int = 0  # the next N data-grid requests get {"type": "error"} with HTTP 200
    empty_total_pages: int = 0  # what an empty range reports: 0 or 1 (unconfirmed upstream)
    max_span_days: int = 366
    rename: dict[str, str] = field(default_factory=dict)  # label -> new label
    # Several datasets: dataset id -> the fields it has ("reference": the reference desk,
    # "instruction": an instruction log with other fields). Default: "reference".
    profiles: dict[int, str] = field(default_factory=dict)
    omit_fields: tuple[str, ...] = ()  # labels this instance does not have (any dataset)
    quiet_after: dict[int, dt.date] = field(default_factory=dict)  # no records after the day
    revision: int = 0  # > 0: some records show late edits
    data_from: dt.date = dt.date(2018, 1, 1)
    data_to: dt.date = dt.date(2035, 12, 31)
    # Bad bodies: page number -> one of BAD_BODIES, answered with HTTP 200 instead of the
    # page; each (window, page) is answered badly ``bad_times`` times (0: always).
    bad_pages: dict[int, str] = field(default_factory=dict)
    bad_times: int = 0
    # Any other damage: called with (page, envelope) for each successful page; returns the
    # envelope to send (it may edit records, totals, anything).
    rewrite: Callable[[int, dict[str, Any]], Any] | None = None
    # Echo the request (Authorization header and body, as received) at the start of every
    # error response's message, as some servers and proxies do: the redaction tests.
    echo: bool = False


@dataclass(frozen=True)
class RawBody:
    """A response body sent as is (not JSON-encoded by the handler)."""

    content: bytes
    content_type: str


_HTML = (
    b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><h1>LibInsight</h1>"
    b"<p>Scheduled maintenance: back soon.</p><form method='post'></form></body></html>"
)
BAD_BODIES = (
    "html",  # an HTML login/maintenance page, text/html
    "html-as-json",  # the same page, labelled application/json
    "truncated",  # the page's JSON cut off half-way
    "empty-body",  # nothing at all, application/json
    "not-envelope",  # a JSON list instead of {"type", "payload"}
    "no-type",  # an envelope without "type"
    "no-payload",  # type success, no payload
    "payload-not-object",  # payload is a list
    "records-missing",  # payload without records
    "records-not-list",  # records is an object
    "total-missing",  # payload without total_pages
    "total-text",  # total_pages is "many"
    "total-negative",  # total_pages is -1
    "totals-grown",  # total_pages/total_records larger than page 1 said (edited meanwhile)
    "repeat-first",  # page 1's records served again
    "empty",  # no records (totals unchanged)
)


def damage(mode: str, body: dict[str, Any], first_records: list[dict[str, Any]]) -> Any:
    """A good envelope turned into the bad body ``mode`` names (see :data:`BAD_BODIES`)."""
    payload = dict(body["payload"])
    text = json.dumps(body).encode()
    raw = {
        "html": RawBody(_HTML, "text/html; charset=utf-8"),
        "html-as-json": RawBody(_HTML, "application/json"),
        "truncated": RawBody(text[: len(text) // 2], "application/json"),
        "empty-body": RawBody(b"", "application/json"),
    }
    if mode in raw:
        return raw[mode]
    if mode == "not-envelope":
        return payload["records"]
    if mode == "no-type":
        return {"payload": payload}
    if mode == "no-payload":
        return {"type": "success"}
    if mode == "payload-not-object":
        return {"type": "success", "payload": payload["records"]}
    edits: dict[str, Any] = {
        "total-text": {"total_pages": "many"},
        "total-negative": {"total_pages": -1},
        "totals-grown": {
            "total_pages": payload["total_pages"] + 1,
            "total_records": payload["total_records"] + 100,
        },
        "repeat-first": {"records": first_records},
        "empty": {"records": []},
        "records-not-list": {"records": {str(i): r for i, r in enumerate(payload["records"])}},
    }
    if mode in edits:
        payload.update(edits[mode])
    elif mode == "records-missing":
        payload.pop("records")
    elif mode == "total-missing":
        payload.pop("total_pages")
    else:
        raise ValueError(f"unknown bad body {mode!r}; one of {', '.join(BAD_BODIES)}")
    return {"type": "success", "payload": payload}


PROFILES = ("reference", "instruction")
_SESSIONS = ["One-shot class", "Workshop", "Orientation", "Consultation"]
_COURSES = ["ENG 101", "BIO 210", "HIST 330", "NURS 402", ""]


def _instruction_record(rng: random.Random, rid: int, start: str) -> dict[str, Any]:
    """An instruction-log record: another dataset of the same instance, other fields."""
    return {
        "_id": rid,
        "_start_date": start,
        "_entered_by": rng.choice(_STAFF),
        "Session Type": [rng.choice(_SESSIONS)],
        "Attendees": rng.randint(3, 40),
        "Course": rng.choice(_COURSES),
        "Librarian Notes": rng.choice(_COMMENTS),
    }


@functools.lru_cache(maxsize=8192)
def _day_records(
    day: dt.date, seed: int, per_day: int, fixed: bool, dataset: int = 0, profile: str = "reference"
) -> tuple[str, ...]:
    """The records of one day, as JSON strings (cached: immutable, cheap to copy).

    ``dataset`` 0 is the first dataset (the records tests have always seen); another id
    gets records of its own.
    """
    salt = f"{seed}:{day.isoformat()}" if not dataset else f"{seed}:{dataset}:{day.isoformat()}"
    rng = random.Random(salt)  # noqa: S311 - test data
    if fixed:
        n = per_day
    else:
        weekend = day.weekday() >= 5
        n = rng.randint(0, max(1, per_day // 3 if weekend else 2 * per_day))
    base = (day - dt.date(2000, 1, 1)).days * 1000
    out = []
    for i in range(n):
        secs = rng.randint(8 * 3600, 21 * 3600)
        start = f"{day.isoformat()} {secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"
        if profile == "instruction":
            out.append(json.dumps(_instruction_record(rng, base + i + 1, start)))
            continue
        minutes = rng.choice([1, 2, 5, 5, 10, 15, 20, 30, 45])
        rec: dict[str, Any] = {
            "_id": base + i + 1,
            "_start_date": "" if rng.random() < 0.004 else start,
            "_entered_by": rng.choice(_STAFF),
            "Question Type": [rng.choice(_QTYPES)],
            "Patron Type": [rng.choice(_PATRONS)],
            "Format": [rng.choice(_FORMATS)],
            "Topics Covered": sorted(rng.sample(_TOPICS, rng.randint(0, 3))),
            # numbers arrive as numbers or as strings
            "Duration (in minutes)": str(minutes) if rng.random() < 0.3 else minutes,
            "Comments/Notes": rng.choice(_COMMENTS),
            "research": rng.choice(_RESEARCH),
            "topic": rng.choice(_TOPIC_TEXT),
            "walkins": str(rng.randint(0, 3)),
            "scans": rng.randint(0, 5),
            "reformat": "",
        }
        out.append(json.dumps(rec))
    return tuple(out)


class LibInsightServer:
    """The server: start/stop, a context manager, a request log and the switches."""

    def __init__(
        self, settings: ServerSettings | None = None, host: str = "127.0.0.1", port: int = 0
    ):
        self.settings = settings or ServerSettings()
        self.lock = threading.Lock()
        self.tokens: dict[str, dict[str, float]] = {}  # token -> {"expires": t, "uses": n}
        self.issued_tokens: list[str] = []
        self.log: list[dict[str, Any]] = []
        self.throttle_waits: list[dict[str, Any]] = []
        self._throttled: dict[tuple[str, str, int], float] = {}
        self._range_cache: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        self._bad_served: dict[tuple[str, str, int], int] = {}
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LibInsightServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> LibInsightServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests look at ----------------------------------------------------------------
    def served_pages(self) -> dict[tuple[str, str, int], int]:
        """How often each (from, to, page) was answered with success."""
        out: dict[tuple[str, str, int], int] = {}
        with self.lock:
            for e in self.log:
                if e["kind"] == "data" and e["status"] == 200 and e.get("ok"):
                    key = (e["from"], e["to"], e["page"])
                    out[key] = out.get(key, 0) + 1
        return out

    def count(self, kind: str, status: int | None = None) -> int:
        with self.lock:
            return sum(
                1
                for e in self.log
                if e["kind"] == kind and (status is None or e["status"] == status)
            )

    def records(
        self, start: dt.date, end: dt.date, dataset_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Every record of a date range, in the order the data grid serves them.

        ``dataset_id``: which dataset (default: the first of ``dataset_ids``).
        """
        s = self.settings
        dataset = s.dataset_ids[0] if dataset_id is None else dataset_id
        key = (
            dataset,
            tuple(sorted(s.profiles.items())),
            s.omit_fields,
            tuple(sorted(s.quiet_after.items())),
            start,
            end,
            s.seed,
            s.records_per_day,
            s.fixed_daily,
            s.revision,
            tuple(sorted(s.rename.items())),
            s.data_from,
            s.data_to,
        )
        with self.lock:
            hit = self._range_cache.get(key)
        if hit is not None:
            return hit  # a range is asked for once per page: build it once
        out = self._build_records(start, end, dataset)
        with self.lock:
            if len(self._range_cache) > 16:
                self._range_cache.clear()
            self._range_cache[key] = out
        return out

    def _build_records(self, start: dt.date, end: dt.date, dataset: int) -> list[dict[str, Any]]:
        s = self.settings
        out: list[dict[str, Any]] = []
        salt = 0 if dataset == s.dataset_ids[0] else dataset
        profile = s.profiles.get(dataset, "reference")
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; one of {', '.join(PROFILES)}")
        last = min(end, s.data_to, s.quiet_after.get(dataset, dt.date.max))
        day = max(start, s.data_from)
        while day <= last:
            for text in _day_records(day, s.seed, s.records_per_day, s.fixed_daily, salt, profile):
                out.append(self._present(json.loads(text)))
            day += dt.timedelta(days=1)
        return out

    def _present(self, rec: dict[str, Any]) -> dict[str, Any]:
        s = self.settings
        for label in s.omit_fields:
            rec.pop(label, None)
        if s.revision and rec["_id"] % 7 == 0 and "Comments/Notes" in rec:
            rec["Comments/Notes"] = f"{rec['Comments/Notes']} (edited r{s.revision})".strip()
        for old, new in s.rename.items():
            if old in rec:
                rec[new] = rec.pop(old)
        return rec

    # -- request handling ------------------------------------------------------------------
    def _record(self, **entry: Any) -> None:
        entry["t"] = time.monotonic()
        with self.lock:
            self.log.append(entry)

    def issue_token(self, client_id: str, client_secret: str) -> tuple[int, dict[str, Any]]:
        s = self.settings
        # bytes: compare_digest refuses str with non-ASCII characters
        ok = secrets.compare_digest(client_id.encode(), s.client_id.encode()) and (
            secrets.compare_digest(client_secret.encode(), s.client_secret.encode())
        )
        if not ok:
            self._record(kind="token", status=401)
            return 401, {
                "error": "invalid_client",
                "error_description": "Client authentication failed",
            }
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = {"expires": time.monotonic() + s.token_ttl_s, "uses": 0}
            self.issued_tokens.append(token)
        self._record(kind="token", status=200)
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": s.token_ttl_s}

    def token_ok(self, token: str | None) -> bool:
        s = self.settings
        with self.lock:
            info = self.tokens.get(token or "")
            if info is None or time.monotonic() >= info["expires"]:
                return False
            if s.token_max_uses is not None and info["uses"] >= s.token_max_uses:
                return False
            info["uses"] += 1
            return True

    def _take(self, switch: str) -> bool:
        """Consume one unit of a burst switch (thread-safe)."""
        with self.lock:
            left = int(getattr(self.settings, switch))
            if left > 0:
                setattr(self.settings, switch, left - 1)
                return True
            return False

    def _bad_mode(self, key: tuple[str, str, int]) -> str | None:
        """The bad body to send for this (window, page), if any is still due."""
        s = self.settings
        mode = s.bad_pages.get(key[2])
        if mode is None:
            return None
        with self.lock:
            served = self._bad_served.get(key, 0)
            if s.bad_times and served >= s.bad_times:
                return None
            self._bad_served[key] = served + 1
        return mode

    def data_grid(
        self, dataset_id: int, query: dict[str, str], token: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        s = self.settings
        if s.latency_s:
            time.sleep(s.latency_s)
        page = int(query.get("page", "1") or 1)
        key = (query.get("from", ""), query.get("to", ""), page)
        now = time.monotonic()
        with self.lock:
            t429 = self._throttled.pop(key, None)
            if t429 is not None:
                self.throttle_waits.append(
                    {"page": key, "waited": now - t429, "retry_after": s.retry_after_s}
                )
        base = {"kind": "data", "from": key[0], "to": key[1], "page": page}
        if not self.token_ok(token):
            msg = {"type": "error", "message": "Invalid or expired access token"}
            status = 200 if s.expired_style == "envelope" else 401
            self._record(**base, status=status, ok=False, auth=False)
            return status, msg, {}
        if self._take("burst_429"):
            with self.lock:
                self._throttled[key] = time.monotonic()
            self._record(**base, status=429)
            return (
                429,
                {"type": "error", "message": "Too many requests"},
                {"Retry-After": str(s.retry_after_s)},
            )
        if self._take("burst_500"):
            self._record(**base, status=500)
            return 500, {"type": "error", "message": "Internal server error"}, {}
        if self._take("error_200"):
            self._record(**base, status=200, ok=False)
            return 200, {"type": "error", "message": "Report could not be generated"}, {}
        if dataset_id not in s.dataset_ids:
            self._record(**base, status=404)
            return 404, {"type": "error", "message": f"Dataset {dataset_id} not found"}, {}
        try:
            start = dt.date.fromisoformat(key[0])
            end = dt.date.fromisoformat(key[1])
        except ValueError:
            self._record(**base, status=400)
            return 400, {"type": "error", "message": "from and to must be YYYY-MM-DD"}, {}
        if end < start or (end - start).days + 1 > s.max_span_days:
            self._record(**base, status=200, ok=False)
            return 200, {"type": "error", "message": "The date range cannot exceed one year"}, {}
        recs = self.records(start, end, dataset_id)
        total_pages = math.ceil(len(recs) / s.page_size) if recs else s.empty_total_pages
        chunk = recs[(page - 1) * s.page_size : page * s.page_size] if page >= 1 else []
        payload = {
            "records": chunk,
            "total_records": len(recs),
            "total_pages": total_pages,
            "displayed_page": page,
        }
        body: Any = {"type": "success", "payload": payload}
        mode = self._bad_mode(key)
        if mode is not None:
            self._record(**base, status=200, ok=False, bad=mode)
            return 200, damage(mode, body, recs[: s.page_size]), {}
        if s.rewrite is not None:
            body = s.rewrite(page, json.loads(json.dumps(body)))  # a copy: the cache stays
        self._record(**base, status=200, ok=True, n=len(chunk))
        return 200, body, {}


def _handler_for(server: LibInsightServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms ACK stalls

        _body = ""  # the request body as received (for ``echo``)

        def log_message(self, format: str, *args: Any) -> None:
            """Silent: tests assert on the structured log instead."""

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            if server.settings.echo and status >= 400 and isinstance(body, dict):
                echoed = (
                    f"{self.command} {self.path} Authorization: "
                    f"{self.headers.get('Authorization', '')} body: {self._body!r}"
                )
                body = {**body, "message": f"request was: {echoed}; {body.get('message', '')}"}
            raw = body if isinstance(body, RawBody) else RawBody(json.dumps(body).encode(), "")
            data = raw.content
            self.send_response(status)
            self.send_header("Content-Type", raw.content_type or "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            self._body = self.rfile.read(length).decode()
            form = {k: v[0] for k, v in parse_qs(self._body).items()}
            if url.path.rstrip("/") != "/v1.0/oauth/token":
                self._send(404, {"type": "error", "message": "Not found"})
                return
            if form.get("grant_type") != "client_credentials":
                self._send(400, {"error": "unsupported_grant_type"})
                return
            cid, secret = form.get("client_id", ""), form.get("client_secret", "")
            auth = self.headers.get("Authorization", "")
            if auth.lower().startswith("basic "):
                try:
                    cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    cid, secret = "", ""
            status, body = server.issue_token(cid, secret)
            self._send(status, body)

        def do_GET(self) -> None:
            self._body = ""
            url = urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            auth = self.headers.get("Authorization", "")
            token = auth[7:] if auth.lower().startswith("bearer ") else None
            if (
                len(parts) == 4
                and parts[:2] == ["v1.0", "custom-dataset"]
                and parts[3] == "data-grid"
            ):
                try:
                    dataset_id = int(parts[2])
                except ValueError:
                    self._send(404, {"type": "error", "message": "Not found"})
                    return
                status, body, headers = server.data_grid(dataset_id, query, token)
                self._send(status, body, headers)
                return
            self._send(404, {"type": "error", "message": "Not found"})

    return Handler


def main(argv: list[str] | None = None) -> None:
    """Run the local server until interrupted."""
    p = argparse.ArgumentParser(description="A LibInsight-compatible local server (demo/tests).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--page-size", type=int, default=100)
    p.add_argument("--records-per-day", type=int, default=6)
    p.add_argument("--token-ttl", type=int, default=3600)
    p.add_argument("--burst-429", type=int, default=0)
    p.add_argument("--burst-500", type=int, default=0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--bad-page",
        action="append",
        default=[],
        metavar="N=KIND",
        help=f"answer page N with a bad body ({', '.join(BAD_BODIES)}); repeatable",
    )
    args = p.parse_args(argv)
    bad_pages = {}
    for item in args.bad_page:
        number, _, kind = item.partition("=")
        if kind not in BAD_BODIES or not number.isdigit():
            p.error(f"--bad-page {item}: expected N=KIND, KIND one of {', '.join(BAD_BODIES)}")
        bad_pages[int(number)] = kind
    instruction = DEMO_DATASET_ID + 1  # a second dataset with fields of its own
    settings = ServerSettings(
        client_secret=os.environ.get("EDULAKE_LIBINSIGHT_CLIENT_SECRET", DEMO_CLIENT_SECRET),
        dataset_ids=(DEMO_DATASET_ID, instruction),
        profiles={instruction: "instruction"},
        latency_s=args.latency_ms / 1000,
        page_size=args.page_size,
        records_per_day=args.records_per_day,
        token_ttl_s=args.token_ttl,
        burst_429=args.burst_429,
        burst_500=args.burst_500,
        seed=args.seed,
        bad_pages=bad_pages,
    )
    server = LibInsightServer(settings, args.host, args.port)
    print(
        f"LibInsight-compatible server on {server.base_url} (datasets {DEMO_DATASET_ID}: "
        f"reference desk, {instruction}: instruction log; "
        f"client id {settings.client_id!r}; the client secret is the demo one unless "
        "EDULAKE_LIBINSIGHT_CLIENT_SECRET is set)",
        flush=True,
    )
    try:
        server._httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._httpd.server_close()


if __name__ == "__main__":
    main()
