"""A reader on S3 + Glue during a key rotation: Athena's view of a table is never half-rotated.

Athena reads the files under the Glue table's location at query time (moto's Athena runs
no SQL), so the reader here does what Athena does: ``GetTable``, then every Parquet file
under the location's projected partition folders (``<location>/date=<day>/``). One answer
is one table: Glue switches each table on its own (one ``UpdateTable`` per table), so a
query joining two tables may see one switched before the other (docs/guarantees.md).

Before table versions a rotation rewrote the files in place, one by one, and this reader
saw pseudonyms of two keys in one answer.
"""

from __future__ import annotations

import threading
import uuid

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from edulake.catalog import publish_all
from edulake.catalog.glue import GlueCatalog
from edulake.core.lake import Lake
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.privacy.rotation import finish_rotation, rotate_key
from edulake.sources.clever import pipeline
from tests.clever.helpers import dp_rows, ru_rows, write
from tests.keys import KEY, OTHER_KEY
from tests.reliability.helpers import run

from .conftest import LAKE_BUCKET, NP_BUCKET

pytestmark = pytest.mark.slow
USERS = [(f"{1000 + i}", f"c{i:03d}") for i in range(12)]
DAYS = [f"2022-01-{d:02d}" for d in range(3, 11)]
TABLES = ("daily_participation", "resource_usage")


def _src(tmp_path) -> str:
    src = str(tmp_path / "src")
    for day in DAYS:
        write(
            src, f"daily-participation/{day}-daily-participation-students.csv", dp_rows(day, USERS)
        )
        write(src, f"resource-usage/{day}-resource-usage-students.csv", ru_rows(day, USERS[:6]))
    return src


def _athena_read(glue, fs: pafs.FileSystem, table: str) -> tuple[set[str], set[str]]:
    """(key ids, sis_id pseudonyms) of one table as Athena would read it now."""
    location = glue.get_table(DatabaseName="edulake_clever", Name=table)["Table"][
        "StorageDescriptor"
    ]["Location"]
    base = location.removeprefix("s3://").rstrip("/")
    keys, pseudonyms = set(), set()
    for info in fs.get_file_info(pafs.FileSelector(base, recursive=True)):
        rest = info.path[len(base) + 1 :]
        if info.type != pafs.FileType.File or not rest.startswith("date="):
            continue  # projection reads <location>/date=<day>/ only
        if not rest.endswith(".parquet"):
            continue
        with fs.open_input_file(info.path) as f:
            t = pq.read_table(f, columns=["sis_id_pseudonym"])
        keys.add((t.schema.metadata or {}).get(b"edulake.key_id", b"").decode())
        pseudonyms |= {p for p in t["sis_id_pseudonym"].to_pylist() if p}
    return keys, pseudonyms


def test_glue_reader_during_a_rotation_never_sees_two_keys(tmp_path, s3_options, glue_client):
    run_id = uuid.uuid4().hex[:8]
    lake = Lake(
        f"s3://{LAKE_BUCKET}/rot-{run_id}", np_root=f"s3://{NP_BUCKET}/rot-{run_id}", s3=s3_options
    )
    run(lake, _src(tmp_path), Pseudonymizer(KEY))
    catalog = GlueCatalog(lake=lake, glue_client=glue_client)
    publish_all(catalog, pipeline.catalog_tables(lake, KEY.key_id))
    old = {Pseudonymizer(KEY).pseudonym(s) for s, _ in USERS}
    new = {Pseudonymizer(OTHER_KEY).pseudonym(s) for s, _ in USERS}
    fs = s3_options.arrow_fs()
    answers: list[tuple[str, set[str], set[str]]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                for table in TABLES:
                    key_ids, pseudonyms = _athena_read(glue_client, fs, table)
                    classes = {
                        "old" if p in old else "new" if p in new else "?" for p in pseudonyms
                    }
                    answers.append((table, key_ids, classes))
        except BaseException as e:  # the test fails on any reader error
            errors.append(e)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        key = Pseudonymizer(OTHER_KEY)
        rotate_key(lake, key, max_quarantine_share=0.5)
        publish_all(catalog, pipeline.catalog_tables(lake, key.key_id), rebuild=True)
        finish_rotation(lake, key)
        n = len(answers)
        while len(answers) < n + 2 and thread.is_alive():
            pass
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    mixed = [a for a in answers if len(a[1]) != 1 or len(a[2]) != 1]
    assert not mixed, f"{len(mixed)} of {len(answers)} answers mixed keys, e.g. {mixed[0]}"
    assert answers[0][1] == {KEY.key_id} and answers[-1][1] == {OTHER_KEY.key_id}
    for table in TABLES:  # the switch was the table's location
        got = glue_client.get_table(DatabaseName="edulake_clever", Name=table)["Table"]
        assert got["StorageDescriptor"]["Location"].endswith(f"{table}/_v=1/")
        assert got["Parameters"]["key_id"] == OTHER_KEY.key_id
