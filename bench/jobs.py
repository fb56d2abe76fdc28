"""The contenders, each run in its own process: ``python -m bench.jobs NAME INPUT WORK``.

Each prints one JSON line: rows processed, wall and CPU seconds of the timed part, and
the process's peak RSS. Every contender reads the same CSV files and writes zstd Parquet
under WORK; only the work itself is timed (imports and setup are not).

- ``edulake``: ``pipeline.process_pending`` on files already landed in a local lake
  (``land`` does the landing, untimed): parse, validate, pseudonymize (HMAC), partition
  by date, write, merge the identity lookups.
- ``edulake-lean``: the same with the settings for a small container
  (``EDULAKE_PROCESSING__WORKERS=1``, ``EDULAKE_ARROW_ALLOCATOR=jemalloc-purge``):
  least memory, at half the speed or less. Arrow reads the allocator when pyarrow loads:
  ``bench/run.py`` puts it in this process's environment; run directly, the job sets it
  itself before importing edulake.
  Both edulake contenders run as in edulake's image, where pandas is not installed: the
  bench's venv has it (for the ``pandas`` and ``dlt`` contenders), and pyarrow imports
  an importable pandas on first use (+50 MB resident) although edulake never uses it.
- ``ceiling``: pyarrow CSV -> Parquet per file, types inferred: no hashing, no
  validation, no partitioning. The parsing and I/O floor.
- ``pandas``: what the replaced scripts did: read a whole CSV, hash each id with hashlib
  row by row (``Series.apply``), write Parquet, file by file.
- ``duckdb``: one SQL job per report: ``read_csv`` -> ``sha256(key || value)`` ->
  ``COPY ... TO`` Parquet ``PARTITION_BY (date)``.
- ``dlt``: a dlt pipeline as its docs show it: the ``filesystem`` source listing the
  CSVs, a transformer reading them with pandas in chunks (dlt's ``read_csv`` plus the
  role from the file name), the PII columns hashed row by row in ``add_map`` (salted
  SHA-256, dlt's "Pseudonymizing columns" recipe), the ``filesystem`` destination
  writing zstd Parquet, one table per report; dlt's default workers.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import resource
import sys
import time
from collections.abc import Callable

KEY = "edulake-bench-key-0123456789abcdef"  # not a secret: synthetic data only
REPORTS = ("daily-participation", "resource-usage")
ID_COLUMNS = ("sis_id", "staff_id", "clever_user_id")
# What a contender tells beyond the common figures (e.g. dlt's time per step), printed
# with them as "detail".
DETAIL: dict[str, object] = {}


def csv_files(input_dir: str, report: str | None = None) -> list[str]:
    pattern = os.path.join(input_dir, report or "*", "*.csv")
    return sorted(glob.glob(pattern))


def _lake(work: str) -> object:
    from edulake.core.lake import Lake

    return Lake(os.path.join(work, "lake"), np_root=os.path.join(work, "np"))


def land(input_dir: str, work: str) -> int:
    """Land the inputs into a fresh local lake (untimed preparation for ``edulake``)."""
    from edulake.connectors.files import FolderSource
    from edulake.core.lake import Lake
    from edulake.sources.clever import pipeline

    lake = _lake(work)
    assert isinstance(lake, Lake)
    src = FolderSource(input_dir)
    found = pipeline.discover(src)
    results = pipeline.land_reports(lake, src, found.reports)
    return len(results)


def run_edulake(input_dir: str, work: str) -> Callable[[], int]:
    from edulake.core.lake import Lake
    from edulake.privacy.pseudonym import Pseudonymizer, PseudonymKey
    from edulake.sources.clever import pipeline

    lake = _lake(work)
    assert isinstance(lake, Lake)
    entries = pipeline.pending(lake)
    if not entries:
        raise RuntimeError("nothing landed: run `land` first")
    pseudonymizer = Pseudonymizer(PseudonymKey(hashlib.sha256(KEY.encode()).digest()))

    def job() -> int:
        result = pipeline.process_pending(lake, entries, pseudonymizer)
        if result.failed:
            raise RuntimeError(f"edulake failed files: {[f.name for f in result.failed]}")
        return sum(f.rows_written + f.rows_quarantined for f in result.files)

    return job


LEAN = {"EDULAKE_PROCESSING__WORKERS": "1", "EDULAKE_ARROW_ALLOCATOR": "jemalloc-purge"}


def run_edulake_lean(input_dir: str, work: str) -> Callable[[], int]:
    os.environ.update(LEAN)  # the workers: read when the run first asks for its settings
    return run_edulake(input_dir, work)


class _NotInstalled:
    """An import hook: these modules behave as if not installed (as in edulake's image)."""

    def __init__(self, *names: str) -> None:
        self.names = names

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def as_in_the_image() -> None:
    """Make this process see what edulake's image installs: no pandas (see the module doc)."""
    sys.meta_path.insert(0, _NotInstalled("pandas"))


def run_ceiling(input_dir: str, work: str) -> Callable[[], int]:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    files = csv_files(input_dir)
    out = os.path.join(work, "ceiling")
    os.makedirs(out, exist_ok=True)

    def job() -> int:
        rows = 0
        for i, path in enumerate(files):
            table = pacsv.read_csv(path)
            rows += table.num_rows
            pq.write_table(table, os.path.join(out, f"{i:05d}.parquet"), compression="zstd")
        return rows

    return job


def run_pandas(input_dir: str, work: str) -> Callable[[], int]:
    import hashlib

    import pandas as pd

    files = csv_files(input_dir)
    out = os.path.join(work, "pandas")
    os.makedirs(out, exist_ok=True)
    salt = KEY.encode()

    def pseudonym(value: object) -> object:
        if not isinstance(value, str) or not value.strip():
            return None
        return hashlib.sha256(salt + value.strip().encode()).hexdigest()

    def job() -> int:
        rows = 0
        for i, path in enumerate(files):
            df = pd.read_csv(path, dtype=dict.fromkeys(ID_COLUMNS, str))
            for col in ID_COLUMNS:
                if col in df.columns:
                    df[f"{col}_pseudonym"] = df.pop(col).apply(pseudonym)
            df["role"] = path.rsplit("-", 1)[1].removesuffix(".csv")
            df.to_parquet(os.path.join(out, f"{i:05d}.parquet"), compression="zstd")
            rows += len(df)
        return rows

    return job


_DUCKDB_SQL = """
COPY (
  SELECT * EXCLUDE (sis_id, staff_id, clever_user_id, filename),
         sha256('{key}' || NULLIF(trim(coalesce(sis_id, staff_id)), '')) AS sis_id_pseudonym,
         sha256('{key}' || NULLIF(trim(clever_user_id), '')) AS clever_user_id_pseudonym,
         regexp_extract(filename, '-(students|teachers|staff)\\.csv$', 1) AS role
  FROM read_csv('{glob}', union_by_name = true, filename = true,
                types = {{'sis_id': 'VARCHAR', 'staff_id': 'VARCHAR',
                          'clever_user_id': 'VARCHAR', 'date': 'DATE'}})
) TO '{out}' (FORMAT parquet, PARTITION_BY (date), COMPRESSION zstd, OVERWRITE_OR_IGNORE)
"""


def run_duckdb(input_dir: str, work: str) -> Callable[[], int]:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET temp_directory = '{os.path.join(work, 'duckdb_tmp')}'")

    os.makedirs(os.path.join(work, "duckdb"), exist_ok=True)

    def job() -> int:
        rows = 0
        for report in REPORTS:
            pattern = os.path.join(input_dir, report, "*.csv")
            if not glob.glob(pattern):
                continue
            out = os.path.join(work, "duckdb", report)
            sql = _DUCKDB_SQL.format(key=KEY, glob=pattern, out=out)
            fetched = con.execute(sql).fetchone()
            rows += int(fetched[0]) if fetched else 0
        return rows

    return job


def run_dlt(input_dir: str, work: str) -> Callable[[], int]:
    # dlt reads its settings from the environment: everything it keeps under the work
    # folder, no telemetry (the bench is offline), zstd Parquet like every contender.
    os.environ.update(
        {
            "DLT_DATA_DIR": os.path.join(work, "dlt_home"),
            "DLT_PROJECT_DIR": os.path.join(work, "dlt_project"),
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            "DATA_WRITER__COMPRESSION": "zstd",
        }
    )
    import dlt
    import pandas as pd
    from dlt.sources.filesystem import filesystem

    salt = KEY

    def pseudonymize(row: dict) -> dict:
        # dlt's recipe (docs: "Pseudonymizing columns"): salted SHA-256 hex, row by row.
        for col in ID_COLUMNS:
            if col in row:
                value = row[col]
                if isinstance(value, str) and value.strip():
                    sh = hashlib.sha256()
                    sh.update((value.strip() + salt).encode())
                    row[col] = sh.digest().hex()
                else:
                    row[col] = None
        return row

    @dlt.transformer
    def read_clever_csv(items: list) -> object:
        # dlt's own read_csv (pandas, 10,000-row chunks, dicts out), plus the role the
        # file name carries and text ids (a leading zero is part of an id).
        for file_obj in items:
            role = file_obj["file_name"].rsplit("-", 1)[1].removesuffix(".csv")
            with file_obj.open(mode="rb") as f:
                for df in pd.read_csv(f, chunksize=10_000, dtype=dict.fromkeys(ID_COLUMNS, str)):
                    df["role"] = role
                    yield df.to_dict(orient="records")

    resources = [
        (
            filesystem(bucket_url=os.path.abspath(input_dir), file_glob=f"{report}/*.csv")
            | read_clever_csv()
        )
        .with_name(report.replace("-", "_"))
        .add_map(pseudonymize)
        for report in REPORTS
        if csv_files(input_dir, report)
    ]
    out = os.path.join(work, "dlt")
    pipeline = dlt.pipeline(
        pipeline_name="clever_bench",
        destination=dlt.destinations.filesystem(bucket_url=os.path.abspath(out)),
        dataset_name="clever",
        pipelines_dir=os.path.join(work, "dlt_pipelines"),
    )

    def job() -> int:
        pipeline.run(resources, loader_file_format="parquet")
        trace = pipeline.last_trace
        normalized = trace.last_normalize_info if trace else None
        if normalized is None:
            raise RuntimeError("dlt ran no normalize step")
        DETAIL["step_seconds"] = {
            step.step: round((step.finished_at - step.started_at).total_seconds(), 2)
            for step in trace.steps
            if step.finished_at is not None
        }
        # rows dlt wrote into the report tables (not its own _dlt_* bookkeeping)
        return sum(n for table, n in normalized.row_counts.items() if not table.startswith("_dlt"))

    return job


CONTENDERS: dict[str, Callable[[str, str], Callable[[], int]]] = {
    "edulake": run_edulake,
    "edulake-lean": run_edulake_lean,
    "ceiling": run_ceiling,
    "pandas": run_pandas,
    "duckdb": run_duckdb,
    "dlt": run_dlt,
}


def peak_rss_mb() -> float:
    """This process's peak resident set size, in MiB.

    ``VmHWM``, the high-water mark of this process's own address space: ``ru_maxrss``
    is not that on Linux, where a child that is forked and execs keeps its parent's
    maximum as a floor (every contender would report at least the bench driver's size).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main(argv: list[str]) -> int:
    name, input_dir, work = argv
    if name == "land" or name.startswith("edulake"):
        as_in_the_image()
    if name == "land":
        files = land(input_dir, work)
        print(json.dumps({"files": files, "peak_rss_mb": peak_rss_mb()}))
        return 0
    job = CONTENDERS[name](input_dir, work)
    setup_rss = peak_rss_mb()  # imports and setup: the floor under the job's peak
    cpu0, wall0 = time.process_time(), time.perf_counter()
    rows = job()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    result: dict[str, object] = {
        "rows": rows,
        "seconds": wall,
        "cpu_seconds": cpu,
        "peak_rss_mb": peak_rss_mb(),
        "setup_rss_mb": setup_rss,
    }
    if DETAIL:
        result["detail"] = DETAIL
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
