"""An analyst's BI session: a read-only DuckDB connection held open in its own process.

python -m tests.catalog.reader DB FOLDER

Opens DB read-only and writes FOLDER/opened.json (what it sees); then, on the same
connection, FOLDER/held.json once FOLDER/look exists; then reconnects and writes
FOLDER/reconnected.json once FOLDER/reconnect exists. "What it sees" = row count and
content checksum of clever.daily_participation.
"""

from __future__ import annotations

import json
import os
import sys
import time

import duckdb

from tests.reliability.helpers import checksum

TABLE = "clever.daily_participation"


def _see(con: duckdb.DuckDBPyConnection) -> list[object]:
    return list(checksum(con.sql(f"SELECT * FROM {TABLE}").to_arrow_table()))


def _write(folder: str, name: str, value: object) -> None:
    tmp = os.path.join(folder, f".{name}")
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, os.path.join(folder, name))


def _wait(path: str) -> None:
    while not os.path.exists(path):
        time.sleep(0.02)


def main(db: str, folder: str) -> int:
    con = duckdb.connect(db, read_only=True)
    _write(folder, "opened.json", _see(con))
    _wait(os.path.join(folder, "look"))
    _write(folder, "held.json", _see(con))
    _wait(os.path.join(folder, "reconnect"))
    con.close()
    con = duckdb.connect(db, read_only=True)
    _write(folder, "reconnected.json", _see(con))
    con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
