"""Realistic Clever participation reports, generated deterministically, and a source over them.

The generator writes files laid out exactly like Clever's reports SFTP server
(``daily-participation/2022-01-03-daily-participation-students.csv``, ...) with the
quirks real exports have: ``staff_id`` instead of ``sis_id`` in staff files, blank
``sis_id`` values, ``True``/``False`` or ``TRUE``/``FALSE`` booleans, files that quote
every field, unicode and URL resource names (and the odd U+FFFD), resource types beyond
the documented four. About half the daily rows are inactive; resource-usage rows exist
only for active users and agree with their daily row (``num_resources_accessed`` =
rows, ``num_logins`` = sum of ``num_access``). Ids are stable across days and reports.

It is built for volume: columns are generated with numpy and rendered to CSV lines with
Arrow compute kernels, one chunk of users of one day at a time, so memory stays bounded
whatever the number of days, and output is byte-identical for a given seed.

Run ``python -m edulake.demo.clever_testdata --help`` for the command line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from edulake.connectors.files import FolderSource
from edulake.core.landing import SourceFile
from edulake.sources.clever.names import FOLDERS, ROLES, report_file_name

# Bump when the output for a given set of parameters changes: it keys the source's cache.
GENERATOR_VERSION = 1

REPORT_COLUMNS: dict[str, tuple[str, ...]] = {
    "daily-participation": (
        "date",
        "sis_id",
        "clever_user_id",
        "clever_school_id",
        "school_name",
        "active",
        "num_logins",
        "num_resources_accessed",
    ),
    "resource-usage": (
        "date",
        "sis_id",
        "clever_user_id",
        "clever_school_id",
        "school_name",
        "resource_type",
        "resource_name",
        "resource_id",
        "num_access",
    ),
}

# Users per generated chunk: bounds memory (a chunk is a few tens of MB of CSV text).
# Part of the output's definition: random draws are made per chunk.
CHUNK_USERS = 50_000
BLANK_SIS_SHARE = 0.015
WEEKEND_FACTOR = 0.08  # schools are closed: a few users still log in


@dataclass(frozen=True)
class _RoleProfile:
    """How a role behaves: share active per school day, resources per active user."""

    active_mean: float
    extra_resources: float  # Poisson mean of resources beyond the first
    sis_start: int


_PROFILES: dict[str, _RoleProfile] = {
    "students": _RoleProfile(active_mean=0.5, extra_resources=3.0, sis_start=200_000),
    "teachers": _RoleProfile(active_mean=0.55, extra_resources=2.5, sis_start=9_000_000),
    "staff": _RoleProfile(active_mean=0.45, extra_resources=1.5, sis_start=70_000_000),
}

# --- name material ----------------------------------------------------------------------

_SCHOOL_NAMES = [
    "Lincoln",
    "Washington",
    "Jefferson",
    "Roosevelt",
    "Franklin",
    "Madison",
    "César Chávez",
    "Dolores Huerta",
    "Sojourner Truth",
    "Harriet Tubman",
    "O'Keeffe",
    "Maya Angelou",
    "Rosa Parks",
    "Sandra Cisneros",
    "Thurgood Marshall",
    "Sequoyah",
    "Oak Grove",
    "Maple Hill",
    "Riverside",
    "Lakeview",
    "Pine Ridge",
    "Cedar Creek",
    "Sunnyvale",
    "Westwood",
    "Eastside",
    "Northgate",
    "Mountain View",
    "Bayside",
    "Willow Park",
    "Hillcrest",
    "Fairview",
    "Meadowbrook",
    "Kennedy",
    "Garfield",
    "Benito Juárez",
    "José Martí",
    "Sor Juana Inés de la Cruz",
    "Fred Korematsu",
    "Daniel Inouye",
    "Ellen Ochoa",
    "Wilma Mankiller",
    "Grace Hopper",
    "Ada Lovelace",
]
_SCHOOL_KINDS = [
    "Elementary School",
    "Elementary",
    "Middle School",
    "High School",
    "Academy",
    "K-8 School",
    "Magnet School",
    "Charter School",
    "Early Learning Center",
    "Escuela Primaria Bilingüe",
    "High School, North Campus",
    "STEM Academy",
]

_APPS = [
    "Google Classroom",
    "Khan Academy",
    "i-Ready",
    "Lexia Core5 Reading",
    "Zearn Math",
    "BrainPOP",
    "BrainPOP Español",
    "Nearpod",
    "Newsela",
    "Seesaw",
    "Epic!",
    "Raz-Kids",
    "IXL",
    "Prodigy Math",
    "Quizlet",
    "Desmos",
    "Canva for Education",
    "Microsoft Teams",
    "Typing.com",
    "Code.org",
    "Flocabulary",
    "Edpuzzle",
    "Kahoot!",
    "Pear Deck",
    "Schoology",
    "Canvas",
    "Gizmos",
    "Discovery Education",
    "Britannica School",
    "Duolingo for Schools",
    "Achieve3000",
    "DreamBox Learning",
    "Amplify ELA",
    "McGraw Hill ConnectED",
    "Savvas Realize",
    "HMH Ed",
    "Imagine Learning Español",
    "GoGuardian",
    "Clever Portal Analytics",
    "Tynker",
]
_DISTRICT_LINKS = [
    "Parent Portal, Grades & Attendance",
    "Cafeteria Menu",
    "District Calendar 2021–22",  # noqa: RUF001 - real names use en dashes
    "Bibliothèque numérique",
    "Biblioteca Digital — Recursos en Español",
    "学习资源 (Chinese Resources)",
    "Tài liệu học tập",
    "📚 Reading Challenge",
    "🧮 Math Practice Hub",
    'Library "Read Across America" Week',
    "Counseling Center",
    "Matem\ufffdticas Interactivas",
    "Ci\ufffdncias Naturais",
    "Student Help Desk",
    "한국어 학습 자료",
    "Español: Tareas y Ayuda",
    "Über Deutsch lernen",
    "Summer Reading 🌞",
    "Technology Acceptable Use Policy",
    "Bus Routes / Rutas",
]
_LINK_TOPICS = [
    "Unit 3 — Fractions",
    "Science Lab Safety",
    "Ms. García's Class Page",
    "Mr. Nguyễn's Homework",
    "Spelling Words",
    "Writer's Workshop",
    "Field Trip Forms",
    "Vocabulário da Semana",
    "第二课 词汇",
    "Ⅳ. Geometry Review",
    "Lectura en voz alta",
    "🎨 Art Gallery",
    "🔬 Lab Notebook",
    "Période 2 — Français",
    "Chem Stoichiometry",
    "AP US History DBQ",
    "Algebra I Notes",
    "Exit Ticket",
    "Book Club: Wonder",
    "Música y Movimiento",
    "Naïve Art Unit",
    "Weekly Newsletter",
]
_URL_HOSTS = [
    "https://docs.google.com/document/d/{}/edit",
    "https://drive.google.com/drive/folders/{}",
    "https://www.youtube.com/watch?v={}",
    "https://padlet.com/teacher/{}",
    "https://sites.google.com/view/{}",
    "https://quizizz.com/join?gc={}",
]


# --- building blocks --------------------------------------------------------------------


def _rng(seed: int, *tags: int) -> np.random.Generator:
    """An independent random stream per (seed, purpose, ...): stable whatever else changes."""
    return np.random.default_rng([seed, *tags])


def _strings(values: Sequence[str]) -> pa.StringArray:
    return pa.array(list(values), type=pa.string())  # type: ignore[return-value]


def _hex_ids(rng: np.random.Generator, n: int) -> pa.StringArray:
    """Clever-like object ids: 24 lowercase hex chars, a plausible creation time first."""
    raw = np.empty((n, 12), dtype=np.uint8)
    stamp = rng.integers(0x56000000, 0x60000000, n, dtype=np.uint32)  # 2015-2021
    raw[:, :4] = stamp.astype(">u4").view(np.uint8).reshape(n, 4)
    raw[:, 4:] = rng.integers(0, 256, (n, 8), dtype=np.uint8)
    text = raw.tobytes().hex().encode("ascii")
    offsets = np.arange(0, 24 * (n + 1), 24, dtype=np.int32)
    arr = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text))
    return arr  # type: ignore[return-value]


def _digit_ids(rng: np.random.Generator, n: int, start: int) -> pa.Array:
    """Unique SIS-like numeric ids (as text), in random order."""
    ids = start + np.cumsum(rng.integers(1, 40, n, dtype=np.int64))
    return pc.cast(pa.array(rng.permutation(ids)), pa.string())


_QUOTE = pa.scalar('"')
_EMPTY = pa.scalar("")
_COMMA = pa.scalar(",")
_NEWLINE = pa.scalar("\n")


def _render(arr: pa.Array, quote_all: bool) -> pa.Array:
    """CSV field text: quoted where needed (or always), inner quotes doubled."""
    quoted = pc.binary_join_element_wise(
        _QUOTE, pc.replace_substring(arr, '"', '""'), _QUOTE, _EMPTY
    )
    if quote_all:
        return quoted
    return pc.if_else(pc.match_substring_regex(arr, '[",\r\n]'), quoted, arr)


def _render_scalar(value: str, quote_all: bool) -> pa.Scalar:
    arr = _render(_strings([value]), quote_all)
    return arr[0]


def _render_ints(values: np.ndarray, quote_all: bool) -> pa.Array:
    text = pc.cast(pa.array(values), pa.string())
    if quote_all:
        return pc.binary_join_element_wise(_QUOTE, text, _QUOTE, _EMPTY)
    return text


def _lines_bytes(fields: list[pa.Array | pa.Scalar]) -> pa.Buffer:
    """One CSV line per row, newline-terminated, as one contiguous buffer."""
    lines = pc.binary_join_element_wise(*fields, _COMMA)
    lines = pc.binary_join_element_wise(lines, _NEWLINE, _EMPTY)
    if len(lines) == 0:
        return pa.py_buffer(b"")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
    start, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
    data: pa.Buffer = lines.buffers()[2]
    return data[int(start) : int(end)]


# --- the world: schools, resources, users ----------------------------------------------


@dataclass
class _Schools:
    ids: pa.StringArray
    names: pa.StringArray
    weights: np.ndarray  # share of users per school


def _make_schools(seed: int, n: int) -> _Schools:
    rng = _rng(seed, 2)
    combos = len(_SCHOOL_NAMES) * len(_SCHOOL_KINDS)
    picks = rng.permutation(combos)[:n] if n <= combos else rng.integers(0, combos, n)
    names = []
    for i, p in enumerate(picks.tolist()):
        name = f"{_SCHOOL_NAMES[p // len(_SCHOOL_KINDS)]} {_SCHOOL_KINDS[p % len(_SCHOOL_KINDS)]}"
        names.append(name if i < combos else f"{name} #{i // combos + 1}")
    sizes = rng.lognormal(mean=0.0, sigma=0.6, size=n)  # a few big high schools, many small
    return _Schools(_hex_ids(rng, n), _strings(names), sizes / sizes.sum())


@dataclass
class _Catalog:
    ids: pa.StringArray
    names: pa.StringArray
    types: pa.StringArray
    weights: np.ndarray  # popularity


def _make_catalog(seed: int) -> _Catalog:
    rng = _rng(seed, 3)
    names: list[str] = []
    types: list[str] = []
    for app in _APPS:
        names.append(app)
        kind = rng.choice(3, p=[0.6, 0.15, 0.25])
        types.append(("clever-district-added", "clever-teacher-added", "app")[kind])
    for link in _DISTRICT_LINKS:
        names.append(link)
        types.append("district-link" if rng.random() < 0.8 else "web-link")
    for i in range(300):
        if rng.random() < 0.3:  # a link saved without a name shows its URL
            token = rng.integers(0, 256, 9, dtype=np.uint8).tobytes().hex()
            names.append(_URL_HOSTS[i % len(_URL_HOSTS)].format(token))
        else:
            names.append(f"{_LINK_TOPICS[i % len(_LINK_TOPICS)]} ({i // len(_LINK_TOPICS) + 1})")
        types.append("teacher-link" if rng.random() < 0.75 else "web-link")
    n = len(names)
    # Popularity: a few apps used by nearly everyone, a long tail of teacher links.
    rank = rng.permutation(n)
    rank[: len(_APPS)] = np.sort(rank[: len(_APPS)]) // 8  # apps lead the ranking
    weights = 1.0 / (rank + 3.0) ** 1.1
    return _Catalog(_hex_ids(rng, n), _strings(names), _strings(types), weights / weights.sum())


@dataclass
class _Users:
    """One role's people: ids and school stable for the whole generation."""

    role: str
    sis: pa.Array  # "" when the Clever record is no longer active
    clever_ids: pa.StringArray
    school: np.ndarray
    propensity: np.ndarray  # chance of being active on a school day
    rendered: dict[bool, list[pa.Array]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.school)

    def fields(self, schools: _Schools, quote_all: bool) -> list[pa.Array]:
        """sis, clever id, school id, school name per user, rendered for a file style."""
        if quote_all not in self.rendered:
            idx = pa.array(self.school)
            self.rendered[quote_all] = [
                _render(self.sis, quote_all),
                _render(self.clever_ids, quote_all),
                pc.take(_render(schools.ids, quote_all), idx),
                pc.take(_render(schools.names, quote_all), idx),
            ]
        return self.rendered[quote_all]


def _make_users(seed: int, role: str, n: int, schools: _Schools) -> _Users:
    profile = _PROFILES[role]
    rng = _rng(seed, 1, ROLES.index(role))
    school = np.sort(rng.choice(len(schools.weights), size=n, p=schools.weights)).astype(np.int32)
    sis = _digit_ids(rng, n, profile.sis_start)
    blank = rng.random(n) < BLANK_SIS_SHARE
    sis = pc.if_else(pa.array(blank), _EMPTY, sis)
    clever_ids = _hex_ids(rng, n)
    concentration = 2.0  # broad: some users are on every day, some hardly ever
    m = profile.active_mean
    propensity = rng.beta(m * concentration, (1 - m) * concentration, n)
    return _Users(role, sis, clever_ids, school, propensity)


# --- one day of one role ----------------------------------------------------------------


@dataclass
class _DayChunk:
    """Activity of users [lo, hi) on one day, and their resource-usage rows."""

    lo: int
    hi: int
    active: np.ndarray  # bool per user
    logins: np.ndarray
    resources: np.ndarray
    ru_user: np.ndarray  # user index (absolute) per resource-usage row
    ru_resource: np.ndarray
    ru_access: np.ndarray


def _simulate(
    seed: int, users: _Users, catalog: _Catalog, day: dt.date, day_idx: int, chunk: int
) -> _DayChunk:
    lo, hi = chunk * CHUNK_USERS, min(len(users), (chunk + 1) * CHUNK_USERS)
    rng = _rng(seed, 4, ROLES.index(users.role), day_idx, chunk)
    p = users.propensity[lo:hi]
    if day.weekday() >= 5:
        p = p * WEEKEND_FACTOR
    active = rng.random(hi - lo) < p
    who = np.flatnonzero(active)
    wanted = 1 + rng.poisson(_PROFILES[users.role].extra_resources, len(who))
    picks = rng.choice(len(catalog.weights), size=int(wanted.sum()), p=catalog.weights)
    # Distinct resources per user: popular picks repeat, keep each (user, resource) once.
    n_res = len(catalog.weights)
    keys = _sorted_unique(np.repeat(who.astype(np.int64), wanted) * n_res + picks)
    ru_local = (keys // n_res).astype(np.int64)
    ru_resource = (keys % n_res).astype(np.int64)
    ru_access = rng.geometric(0.45, len(keys)).astype(np.int64)
    size = hi - lo
    resources = np.bincount(ru_local, minlength=size).astype(np.int64)
    logins = np.bincount(ru_local, weights=ru_access, minlength=size).astype(np.int64)
    return _DayChunk(lo, hi, active, logins, resources, ru_local + lo, ru_resource, ru_access)


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    """Distinct values, ascending (several times faster than np.unique here)."""
    keys = np.sort(keys)
    keep = np.empty(len(keys), dtype=bool)
    keep[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=keep[1:])
    return keys[keep]


@dataclass(frozen=True)
class _Style:
    """How one file is written: boolean spelling and quoting."""

    upper_bools: bool
    quote_all: bool
    unpadded_dates: bool = False  # older exports: 2022-01-3

    def date_text(self, day: dt.date) -> pa.Scalar:
        text = f"{day.year}-{day.month}-{day.day}" if self.unpadded_dates else day.isoformat()
        return _render_scalar(text, self.quote_all)


def _style(seed: int, report: str, role: str, day_idx: int, unpadded_dates: bool) -> _Style:
    # A fixed rotation rather than random draws, so every generation of more than a
    # handful of files exercises every style.
    r, k = FOLDERS.index(report), ROLES.index(role)
    return _Style(
        upper_bools=(seed + day_idx + k) % 2 == 1,
        quote_all=(seed + day_idx + 2 * k + r) % 3 == 0,
        unpadded_dates=unpadded_dates,
    )


def _header(report: str, role: str, style: _Style) -> bytes:
    cols = [
        ("staff_id" if c == "sis_id" and role == "staff" else c) for c in REPORT_COLUMNS[report]
    ]
    if style.quote_all:
        cols = [f'"{c}"' for c in cols]
    return (",".join(cols) + "\n").encode()


def _dp_bytes(
    day: dt.date, c: _DayChunk, users: _Users, schools: _Schools, style: _Style
) -> pa.Buffer:
    sis, cid, sid, sname = (
        f.slice(c.lo, c.hi - c.lo) for f in users.fields(schools, style.quote_all)
    )
    bools = ["FALSE", "TRUE"] if style.upper_bools else ["False", "True"]
    active = pc.take(_render(_strings(bools), style.quote_all), pa.array(c.active.astype(np.int8)))
    return _lines_bytes(
        [
            style.date_text(day),
            sis,
            cid,
            sid,
            sname,
            active,
            _render_ints(c.logins, style.quote_all),
            _render_ints(c.resources, style.quote_all),
        ]
    )


def _ru_bytes(
    day: dt.date,
    c: _DayChunk,
    users: _Users,
    schools: _Schools,
    catalog: _Catalog,
    style: _Style,
    rendered_catalog: list[pa.Array],
) -> pa.Buffer:
    idx = pa.array(c.ru_user)
    user_fields = [pc.take(f, idx) for f in users.fields(schools, style.quote_all)]
    ridx = pa.array(c.ru_resource)
    rtype, rname, rid = (pc.take(f, ridx) for f in rendered_catalog)
    return _lines_bytes(
        [
            style.date_text(day),
            *user_fields,
            rtype,
            rname,
            rid,
            _render_ints(c.ru_access, style.quote_all),
        ]
    )


# --- the generator ----------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratedFile:
    """One file written: its path, data rows (header excluded) and size in bytes."""

    path: str
    report: str
    role: str
    rows: int
    size: int


class _WriteBehind:
    """Writes buffers on a background thread, in order, so disk I/O overlaps generation.

    The queue is bounded: at most a few chunks wait, so memory stays bounded.
    """

    def __init__(self, depth: int = 4) -> None:
        self._queue: queue.Queue[tuple[IO[bytes], pa.Buffer | bytes | None] | None] = queue.Queue(
            depth
        )
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="testdata-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            stream, data = item
            try:
                if data is None:
                    stream.close()
                elif self._error is None:
                    stream.write(data)  # type: ignore[arg-type]  # pa.Buffer: buffer protocol
            except BaseException as exc:  # reported to the generating thread
                self._error = exc

    def write(self, stream: IO[bytes], data: pa.Buffer | bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((stream, data))

    def close(self, stream: IO[bytes]) -> None:
        """Close the stream once everything queued before has been written."""
        self._queue.put((stream, None))

    def finish(self) -> None:
        """Wait for every queued write; raise the first write error, if any."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


@dataclass
class _Writer:
    """An output file being written, and what has gone into it."""

    path: str
    report: str
    role: str
    style: _Style
    stream: IO[bytes]
    sink: _WriteBehind
    rows: int = 0
    size: int = 0

    def write(self, data: pa.Buffer | bytes, rows: int = 0) -> None:
        self.sink.write(self.stream, data)
        self.rows += rows
        self.size += len(data)

    def close(self) -> GeneratedFile:
        self.sink.close(self.stream)
        return GeneratedFile(self.path, self.report, self.role, self.rows, self.size)


def _defaults(
    students: int, teachers: int | None, staff: int | None, schools: int | None
) -> tuple[int, int, int]:
    """Sizes not given follow a typical district's ratios."""
    return (
        teachers if teachers is not None else max(1, students // 14),
        staff if staff is not None else max(1, students // 50),
        schools if schools is not None else max(1, min(400, students // 400)),
    )


def generate(
    out_dir: str,
    *,
    start: dt.date,
    days: int,
    students: int,
    teachers: int | None = None,
    staff: int | None = None,
    schools: int | None = None,
    seed: int = 0,
    reports: Sequence[str] = ("daily-participation", "resource-usage"),
    roles: Sequence[str] = ROLES,
    multi_day_file: bool = False,
    unpadded_dates: bool = False,
) -> list[GeneratedFile]:
    """Write Clever reports under ``out_dir`` and describe each file written."""
    if days < 1 or students < 0:
        raise ValueError("days must be >= 1 and students >= 0")
    for report in reports:
        if report not in REPORT_COLUMNS:
            raise ValueError(f"unknown report {report!r}; expected one of {FOLDERS}")
    for role in roles:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
    n_teachers, n_staff, n_schools = _defaults(students, teachers, staff, schools)
    counts = {"students": students, "teachers": n_teachers, "staff": n_staff}
    world_schools = _make_schools(seed, n_schools)
    catalog = _make_catalog(seed)
    for report in reports:
        os.makedirs(os.path.join(out_dir, report), exist_ok=True)

    plan = _Plan(out_dir, seed, start, days, tuple(reports), multi_day_file, unpadded_dates)
    done: list[GeneratedFile] = []
    sink = _WriteBehind()
    try:
        for role in roles:
            users = _make_users(seed, role, counts[role], world_schools)
            done += _generate_role(plan, sink, users, world_schools, catalog)
    finally:
        sink.finish()
    return sorted(done, key=lambda f: f.path)


@dataclass(frozen=True)
class _Plan:
    """What to write: where, which days and reports, in which file layout."""

    out_dir: str
    seed: int
    start: dt.date
    days: int
    reports: tuple[str, ...]
    multi_day_file: bool
    unpadded_dates: bool


def _generate_role(
    plan: _Plan, sink: _WriteBehind, users: _Users, schools: _Schools, catalog: _Catalog
) -> list[GeneratedFile]:
    """Write one role's files, day by day and chunk by chunk of users."""
    done: list[GeneratedFile] = []
    rendered_catalog: dict[bool, list[pa.Array]] = {}
    writers: dict[str, _Writer] = {}
    try:
        for day_idx in range(plan.days):
            day = plan.start + dt.timedelta(days=day_idx)
            if day_idx == 0 or not plan.multi_day_file:
                done += [w.close() for w in writers.values()]
                writers = {
                    r: _open_writer(plan, sink, r, users.role, day, day_idx) for r in plan.reports
                }
            for chunk in range(max(1, -(-len(users) // CHUNK_USERS))):
                c = _simulate(plan.seed, users, catalog, day, day_idx, chunk)
                if "daily-participation" in writers:
                    w = writers["daily-participation"]
                    w.write(_dp_bytes(day, c, users, schools, w.style), c.hi - c.lo)
                if "resource-usage" in writers:
                    w = writers["resource-usage"]
                    q = w.style.quote_all
                    if q not in rendered_catalog:
                        rendered_catalog[q] = [
                            _render(a, q) for a in (catalog.types, catalog.names, catalog.ids)
                        ]
                    data = _ru_bytes(day, c, users, schools, catalog, w.style, rendered_catalog[q])
                    w.write(data, len(c.ru_user))
    finally:
        done += [w.close() for w in writers.values()]
    return done


def _open_writer(
    plan: _Plan, sink: _WriteBehind, report: str, role: str, day: dt.date, day_idx: int
) -> _Writer:
    path = os.path.join(plan.out_dir, report, report_file_name(day, report, role))
    style = _style(plan.seed, report, role, day_idx, plan.unpadded_dates)
    stream = open(path, "wb")  # noqa: SIM115 - closed by the write-behind thread
    w = _Writer(path, report, role, style, stream, sink)
    w.write(_header(report, role, style))
    return w


def generate_reports(
    out_dir: str,
    *,
    start: dt.date,
    days: int,
    students: int,
    teachers: int | None = None,
    staff: int | None = None,
    schools: int | None = None,
    seed: int = 0,
    reports: Sequence[str] = ("daily-participation", "resource-usage"),
    roles: Sequence[str] = ROLES,
    multi_day_file: bool = False,
    unpadded_dates: bool = False,
) -> list[str]:
    """Write realistic Clever reports under ``out_dir``, laid out like Clever's SFTP server.

    Returns the paths written. Sizes not given (teachers, staff, schools) follow a
    typical district's ratios to ``students``. Same parameters, same bytes.
    """
    written = generate(
        out_dir,
        start=start,
        days=days,
        students=students,
        teachers=teachers,
        staff=staff,
        schools=schools,
        seed=seed,
        reports=reports,
        roles=roles,
        multi_day_file=multi_day_file,
        unpadded_dates=unpadded_dates,
    )
    return [f.path for f in written]


# --- the source -------------------------------------------------------------------------


@dataclass(frozen=True)
class TestDataParams:
    """What a test data set is generated from (and what its cache is keyed by)."""

    __test__ = False  # not a pytest class

    days: int = 5
    students: int = 2_000
    teachers: int = 150
    staff: int = 40
    schools: int = 12
    seed: int = 0
    start: dt.date = dt.date(2022, 1, 3)
    multi_day_file: bool = False

    def cache_key(self) -> str:
        text = f"{self!r}|v{GENERATOR_VERSION}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class TestDataOptions(BaseModel):
    """The test-data generator's options, as the ``testdata`` flow parameter takes them."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    __test__ = False  # a name starting with "Test" is not a pytest class

    days: int = Field(5, ge=1, le=3660, description="Report days to generate, from start.")
    students: int = Field(2_000, ge=0, description="Students in the generated district.")
    teachers: int = Field(150, ge=0, description="Teachers in the generated district.")
    staff: int = Field(40, ge=0, description="Staff in the generated district.")
    schools: int = Field(12, ge=1, description="Schools the people are spread over.")
    seed: int = Field(0, description="Random seed: the same seed gives the same files.")
    start: dt.date = Field(dt.date(2022, 1, 3), description="The first report day.")
    multi_day_file: bool = Field(
        False,
        description="Write every day into one file per report and role (an edge case: "
        "Clever's files hold one day each).",
    )

    def source(self, cache_dir: str | None = None) -> TestDataSource:
        """The generated files served like a Clever folder."""
        return TestDataSource(**self.model_dump(), cache_dir=cache_dir)


class TestDataSource:
    """Generated Clever reports served like a folder: generated once, cached, then reused.

    The cache folder is keyed by the generation parameters and the generator version, so
    a cached copy is always exactly what the parameters describe. Generation happens in a
    temporary sibling folder that is renamed into place, so a half-generated cache is
    never served.
    """

    __test__ = False  # a name starting with "Test" is not a pytest class

    def __init__(
        self,
        *,
        days: int = 5,
        students: int = 2_000,
        teachers: int = 150,
        staff: int = 40,
        schools: int = 12,
        seed: int = 0,
        start: dt.date = dt.date(2022, 1, 3),
        multi_day_file: bool = False,
        cache_dir: str | None = None,
    ) -> None:
        self.params = TestDataParams(
            days, students, teachers, staff, schools, seed, start, multi_day_file
        )
        default = os.path.join(tempfile.gettempdir(), "edulake-testdata", self.params.cache_key())
        self.cache_dir = os.path.abspath(cache_dir or default)
        self.label = f"testdata(days={days}, students={students}, seed={seed})"
        self._folder: FolderSource | None = None

    def ensure_generated(self) -> str:
        """Generate the files unless the cache already holds them; return the folder."""
        if not os.path.isdir(self.cache_dir):
            parent = os.path.dirname(self.cache_dir)
            os.makedirs(parent, exist_ok=True)
            staging = tempfile.mkdtemp(prefix=".generating-", dir=parent)
            try:
                p = self.params
                generate(
                    staging,
                    start=p.start,
                    days=p.days,
                    students=p.students,
                    teachers=p.teachers,
                    staff=p.staff,
                    schools=p.schools,
                    seed=p.seed,
                    multi_day_file=p.multi_day_file,
                )
                os.rename(staging, self.cache_dir)
            except OSError:
                # Another process generated the same (identical) files first: use theirs.
                if not os.path.isdir(self.cache_dir):
                    raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return self.cache_dir

    def _source(self) -> FolderSource:
        if self._folder is None:
            self._folder = FolderSource(self.ensure_generated())
        return self._folder

    def list_files(self, folders: list[str]) -> list[SourceFile]:
        """Files under the given report folders (generated on first use)."""
        return self._source().list_files(folders)

    def open(self, file: SourceFile) -> AbstractContextManager[IO[bytes]]:
        """A binary stream of one generated file."""
        return self._source().open(file)

    def close(self) -> None:
        return None


# --- command line -----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Generate reports into a folder and print what was written."""
    ap = argparse.ArgumentParser(
        prog="python -m edulake.demo.clever_testdata",
        description="Generate realistic Clever participation reports (deterministic).",
    )
    ap.add_argument("--out", required=True, help="output folder (laid out like Clever's SFTP)")
    ap.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2022, 1, 3))
    ap.add_argument("--days", type=int, default=5)
    ap.add_argument("--students", type=int, default=2_000)
    ap.add_argument("--teachers", type=int, help="default: students / 14")
    ap.add_argument("--staff", type=int, help="default: students / 50")
    ap.add_argument("--schools", type=int, help="default: students / 400 (at most 400)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reports", nargs="+", choices=FOLDERS, default=FOLDERS)
    ap.add_argument("--roles", nargs="+", choices=ROLES, default=list(ROLES))
    ap.add_argument("--multi-day-file", action="store_true", help="one file per report/role")
    ap.add_argument("--unpadded-dates", action="store_true", help="dates like 2022-01-3")
    ap.add_argument("--quiet", action="store_true", help="print the summary only")
    args = ap.parse_args(argv)

    began = time.perf_counter()
    cpu = time.process_time()
    files = generate(
        args.out,
        start=args.start,
        days=args.days,
        students=args.students,
        teachers=args.teachers,
        staff=args.staff,
        schools=args.schools,
        seed=args.seed,
        reports=args.reports,
        roles=args.roles,
        multi_day_file=args.multi_day_file,
        unpadded_dates=args.unpadded_dates,
    )
    seconds = time.perf_counter() - began
    cpu_seconds = time.process_time() - cpu
    if not args.quiet:
        for f in files:
            print(
                f"{f.rows:>12,} rows {f.size / 1e6:>9.2f} MB  {os.path.relpath(f.path, args.out)}"
            )
    rows = sum(f.rows for f in files)
    size = sum(f.size for f in files)
    print(
        f"wrote {len(files)} files, {rows:,} rows, {size / 1e6:,.1f} MB to {args.out} "
        f"in {seconds:.2f} s ({rows / max(seconds, 1e-9):,.0f} rows/s; "
        f"{cpu_seconds:.2f} s CPU)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
