"""Commands without --lake-root use the configured lake (EDULAKE_LAKE__ROOT), never ./lake."""

from __future__ import annotations

import datetime as dt

from edulake.cli import main
from edulake.core.lake import Lake
from edulake.sources.libinsight.store import read_watermark, write_watermark


def test_watermark_edits_the_configured_lake(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    district = tmp_path / "district-lake"
    monkeypatch.setenv("EDULAKE_LAKE__ROOT", str(district))
    argv = ["libinsight-watermark", "--dataset-id", "7", "--set", "2026-01-01"]
    assert main(argv) == 0
    assert "None -> 2026-01-01" in capsys.readouterr().out
    lake = Lake(str(district), str(tmp_path / "district-lake-protected"))
    assert read_watermark(lake, "reference_desk_7", 7) == dt.date(2026, 1, 1)
    assert not (tmp_path / "lake").exists()


def test_audit_reads_the_configured_lake(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    district = tmp_path / "district-lake"
    monkeypatch.setenv("EDULAKE_LAKE__ROOT", str(district))
    lake = Lake(str(district), str(tmp_path / "district-lake-protected"))
    write_watermark(lake, "reference_desk_7", 7, dt.date(2026, 1, 1), "test")
    assert main(["audit"]) == 0
    out = capsys.readouterr().out
    assert "scanned 1 other files" in out and "0 finding(s)" in out  # the watermark file
    assert not (tmp_path / "lake").exists()
