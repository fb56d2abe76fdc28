"""An s3:// lake without an np root keeps one bucket, and every run says so loudly."""

from __future__ import annotations

import logging
import uuid

import pytest

from tasks.common import make_lake
from tests.aws.conftest import LAKE_BUCKET, NP_BUCKET
from tests.servers.seaweedfs import SeaweedS3

pytestmark = pytest.mark.slow


@pytest.fixture
def s3_env(s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "EDULAKE_S3__ENDPOINT_URL": s3_server.endpoint_url,
        "EDULAKE_S3__REGION": s3_server.region,
        "EDULAKE_S3__ACCESS_KEY_ID": s3_server.access_key,
        "EDULAKE_S3__SECRET_ACCESS_KEY": s3_server.secret_key,
    }.items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("s3_env")
def test_an_s3_lake_without_np_root_warns_at_run_start(caplog):
    root = f"s3://{LAKE_BUCKET}/{uuid.uuid4().hex}"
    with caplog.at_level(logging.WARNING, logger="edulake"):
        lake = make_lake(root, None)
    assert lake.protected.uri == lake.main.uri  # the same bucket, by prefix
    assert any("NO NP ROOT" in r.getMessage() for r in caplog.records)


@pytest.mark.usefixtures("s3_env")
def test_an_s3_lake_with_an_np_root_does_not_warn(caplog):
    run = uuid.uuid4().hex
    with caplog.at_level(logging.WARNING, logger="edulake"):
        lake = make_lake(f"s3://{LAKE_BUCKET}/{run}", f"s3://{NP_BUCKET}/{run}")
    assert lake.protected.uri != lake.main.uri
    assert not any("NO NP ROOT" in r.getMessage() for r in caplog.records)


@pytest.mark.usefixtures("s3_env")
def test_move_raw_on_s3_moves_an_older_lakes_raw_files_to_the_np_bucket(capsys):
    """On S3 (SeaweedFS): an older lake's raw files under the lake bucket are refused by
    every run, and ``move-raw`` (holding the S3 lease) moves them to the np bucket."""
    from edulake.cli import main as cli
    from edulake.core.lake import Zone
    from edulake.core.layout import RawFilesUnderLakeRoot, has_legacy_raw

    run = uuid.uuid4().hex
    root, np_root = f"s3://{LAKE_BUCKET}/{run}", f"s3://{NP_BUCKET}/{run}"
    one_root = make_lake(root, root)  # the layout an older edulake wrote: all under root
    raw = {
        "clever/daily-participation/2022-01-03-daily-participation-students.csv": b"date,sis_id\n"
        b"2022-01-03,S99001\n",
        "clever/resource-usage/2022-01-03-resource-usage-students.csv": b"date,sis_id\n" * 3,
    }
    for key, body in raw.items():
        one_root.write_bytes(Zone.STAGE1NP, key, body)
    with pytest.raises(RawFilesUnderLakeRoot, match="move-raw") as err:
        make_lake(root, np_root)
    assert "S99001" not in str(err.value)

    assert cli(["move-raw", "--lake-root", root, "--np-root", np_root]) == 0
    assert f"moved {len(raw)} raw file(s)" in capsys.readouterr().out
    lake = make_lake(root, np_root)  # no longer refused
    assert not has_legacy_raw(lake)
    for key, body in raw.items():
        assert lake.read_bytes(Zone.STAGE1NP, key) == body  # at the np bucket, whole
    assert one_root.list(Zone.STAGE1NP, "clever") == []  # nothing left under the lake bucket
    import pyarrow.fs as pafs

    left = pafs.FileSelector(lake.main.path("stage1np"), recursive=True, allow_not_found=True)
    assert lake.main.fs.get_file_info(left) == []  # not even S3's empty folder markers
    assert cli(["move-raw", "--lake-root", root, "--np-root", np_root]) == 0
    assert "nothing to move" in capsys.readouterr().out
