"""Benchmark inputs: realistic Clever reports of about a requested number of rows."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

from edulake.demo.clever_testdata import generate

START = dt.date(2022, 1, 3)  # a Monday: weeks start on school days
DISTRICT_STUDENTS = 70_000  # a large district
# Rows (daily participation + resource usage, all roles) per student per calendar day,
# averaged over a week with its weekend, measured on the generator.
ROWS_PER_STUDENT_DAY = 2.62


@dataclass(frozen=True)
class Inputs:
    """A generated input folder: laid out like Clever's SFTP server."""

    path: str
    rows: int
    bytes: int
    files: int
    students: int
    days: int
    seconds: float

    @property
    def megabytes(self) -> float:
        return self.bytes / 1e6


def shape(rows: int) -> tuple[int, int]:
    """(students, days) that give about ``rows`` rows: a large district over many days,
    or one week of a smaller district for small targets."""
    week = DISTRICT_STUDENTS * ROWS_PER_STUDENT_DAY * 7
    if rows >= week:
        return DISTRICT_STUDENTS, max(7, round(rows / (DISTRICT_STUDENTS * ROWS_PER_STUDENT_DAY)))
    return max(50, round(rows / (ROWS_PER_STUDENT_DAY * 7))), 7


def make_inputs(out_dir: str, rows: int, seed: int = 0) -> Inputs:
    """Generate reports (one file per day, report and role, as Clever delivers them)."""
    import time

    students, days = shape(rows)
    began = time.perf_counter()
    files = generate(out_dir, start=START, days=days, students=students, seed=seed)
    seconds = time.perf_counter() - began
    return Inputs(
        path=os.path.abspath(out_dir),
        rows=sum(f.rows for f in files),
        bytes=sum(f.size for f in files),
        files=len(files),
        students=students,
        days=days,
        seconds=seconds,
    )
