"""The consortium file: defaults with {district}, one key/login/lake per district, one-line errors."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from edulake.core.settings import ConfigError
from edulake.fanout import child_outcome, failure_message, month_windows, pick_windows
from edulake.tenants import ConsortiumError, is_cron, load_consortium, main, parse_consortium

GOOD = """
consortium: capital-region
defaults:
  lake_root: /data/{district}/lake
  np_root: /data/{district}/np
  sftp_block: edulake-{district}-sftp
  hmac_key_block: edulake-{district}-hmac-key
districts:
  - id: albany
    name: Albany City SD
  - id: troy
    name: Troy City SD
    schedule: "0 6 * * *"
    timezone: America/Chicago
"""


def write(tmp_path, text: str):
    path = tmp_path / "consortium.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_defaults_fill_each_district_with_its_id(tmp_path) -> None:
    c = load_consortium(write(tmp_path, GOOD))
    albany, troy = c.districts
    assert albany.lake_root == "/data/albany/lake" and albany.np_root == "/data/albany/np"
    assert (albany.sftp_block, albany.hmac_key_block) == (
        "edulake-albany-sftp",
        "edulake-albany-hmac-key",
    )
    assert albany.glue_database == "edulake_albany_clever"
    assert albany.child_env() == {
        "EDULAKE_CATALOG__GLUE_DATABASE_PREFIX": "edulake_albany",
        "EDULAKE_LEASE__PREFECT_LIMIT": "edulake-lake-albany",
        "EDULAKE_HMAC_KEY": "",  # the district's block or nothing: never a shared key
    }
    assert albany.child_parameters() == {
        "source": "sftp",
        "sftp_block": "edulake-albany-sftp",
        "hmac_key_block": "edulake-albany-hmac-key",
        "lake_root": "/data/albany/lake",
        "np_root": "/data/albany/np",
    }
    assert (troy.schedule, troy.timezone) == ("0 6 * * *", "America/Chicago")
    assert [d.id for d in c.select(["troy"])] == ["troy"]
    assert [d.id for d in c.select(schedule="0 6 * * *@America/Chicago")] == ["troy"]
    assert len(c.schedule_slots()) == 2
    with pytest.raises(ConsortiumError, match="no such district"):
        c.select(["nowhere"])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("hmac_key_block: edulake-{district}-hmac-key", "hmac_key_block: shared-key"),
            "districts[1].hmac_key_block repeats districts[0]: one key per district",
        ),
        (
            ("sftp_block: edulake-{district}-sftp", "sftp_block: one-login"),
            "districts[1].sftp_block repeats districts[0]",
        ),
        (
            ("lake_root: /data/{district}/lake", "lake_root: /data/lake"),
            "districts[1].lake_root repeats districts[0]",
        ),
        (
            ("np_root: /data/{district}/np", "np_root: /data/{district}/lake"),
            "np_root must differ from lake_root",
        ),
        (("id: troy", "id: albany"), "districts[1].id repeats districts[0]"),
        (("id: troy", "id: Troy-City"), "districts[1].id: must be lower case"),
        (
            ('schedule: "0 6 * * *"', 'schedule: "every morning"'),
            "districts[1].schedule: is not a cron expression",
        ),
        (
            ("timezone: America/Chicago", "timezone: Mars/Olympus"),
            "districts[1].timezone: is not an IANA time zone",
        ),
        (
            ("    name: Troy City SD", "    name: Troy City SD\n    color: blue"),
            "districts[1].color: Extra inputs are not permitted",
        ),
    ],
)
def test_each_problem_is_one_line_naming_the_field_not_the_value(
    tmp_path, change, expected
) -> None:
    text = textwrap.dedent(GOOD).replace(*change)
    with pytest.raises(ConsortiumError) as err:
        load_consortium(write(tmp_path, text))
    message = str(err.value)
    assert expected in message
    for secret_ish in ("shared-key", "one-login", "every morning", "Mars/Olympus", "blue"):
        assert secret_ish not in message
    assert isinstance(err.value, ConfigError)


def test_missing_fields_and_bad_yaml(tmp_path) -> None:
    with pytest.raises(ConsortiumError) as err:
        parse_consortium({"consortium": "x", "districts": [{"id": "a"}]})
    lines = str(err.value).splitlines()[1:]
    assert {ln.split(": ")[1] for ln in lines} >= {
        "districts[0].name",
        "districts[0].sftp_block",
        "districts[0].hmac_key_block",
        "districts[0].lake_root",
        "districts[0].np_root",
    }
    with pytest.raises(ConsortiumError, match="not valid YAML at line 2"):
        load_consortium(write(tmp_path, "consortium: x\n  districts: [\n"))
    with pytest.raises(ConsortiumError, match="cannot read"):
        load_consortium(tmp_path / "absent.yaml")


def test_cli_prints_one_schedule_per_slot(tmp_path, capsys) -> None:
    path = write(tmp_path, GOOD)
    assert main(["schedules", str(path)]) == 0
    out = capsys.readouterr().out
    assert "schedule_slot: 30 5 * * *@America/New_York" in out
    assert "schedule_slot: 0 6 * * *@America/Chicago" in out
    assert main(["check", str(tmp_path / "absent.yaml")]) == 1


def test_month_windows_cover_the_range_exactly() -> None:
    w = month_windows(dt.date(2023, 11, 15), dt.date(2024, 2, 3))
    assert [(x.label, x.start, x.end) for x in w] == [
        ("2023-11", dt.date(2023, 11, 15), dt.date(2023, 11, 30)),
        ("2023-12", dt.date(2023, 12, 1), dt.date(2023, 12, 31)),
        ("2024-01", dt.date(2024, 1, 1), dt.date(2024, 1, 31)),
        ("2024-02", dt.date(2024, 2, 1), dt.date(2024, 2, 3)),
    ]
    two = month_windows(dt.date(2023, 11, 15), dt.date(2024, 2, 3), months_per_child=2)
    assert [(x.label, x.start, x.end) for x in two] == [
        ("2023-11..2023-12", dt.date(2023, 11, 15), dt.date(2023, 12, 31)),
        ("2024-01..2024-02", dt.date(2024, 1, 1), dt.date(2024, 2, 3)),
    ]
    assert [x.label for x in pick_windows(w, ["2024-01"])] == ["2024-01"]
    with pytest.raises(ConfigError):
        pick_windows(w, ["2025-01"])
    with pytest.raises(ConfigError):
        month_windows(dt.date(2024, 2, 1), dt.date(2024, 1, 1))


def test_child_outcome_from_its_artifacts() -> None:
    artifacts = {
        "clever-landing": '[{"file": "a", "outcome": "landed"}, {"file": "b", "outcome": "unchanged"},'
        ' {"file": "c", "outcome": "new-version"}]',
        "clever-processing": '[{"file": "a", "rows written": 10}, {"file": "c", "rows written": 5}]',
        "clever-summary": "# Clever participation run: WARNING: daily-participation stale: x\n- more",
    }
    ok = child_outcome("albany", "COMPLETED", "Completed", artifacts, "id-1")
    assert (ok.landed, ok.rows, ok.stale, ok.failed, ok.reason) == (2, 15, True, False, "")
    twice = child_outcome(
        "albany",
        "COMPLETED",
        "Completed",
        {
            "clever-landing": [artifacts["clever-landing"], '[{"outcome": "unchanged"}]'],
            "clever-summary": ["# Clever participation run: WARNING: x stale", "# ... run: OK"],
        },
    )
    assert (twice.landed, twice.stale) == (2, False)
    crashed = child_outcome("troy", "CRASHED", "Crashed", {}, "id-2")
    assert (crashed.landed, crashed.rows, crashed.failed, crashed.reason) == (0, 0, True, "Crashed")
    failed = child_outcome("x", "FAILED", "Failed", {}, "id-3", "SftpHostKeyError")
    message = failure_message("districts", [ok, crashed, failed], "re-run with --param districts=")
    assert message.startswith(
        "2 of 3 districts failed: troy (Crashed), x (Failed (SftpHostKeyError))"
    )
    assert message.endswith('["troy", "x"]')


def test_cron_expressions() -> None:
    for good in ("30 5 * * *", "0 6 * * 1-5", "*/15 3,4 1 1-12/2 0"):
        assert is_cron(good), good
    for bad in (
        "30 5 * *",
        "60 5 * * *",
        "0 24 * * *",
        "0 5 0 * *",
        "0 5 * * 8",
        "5-1 * * * *",
        "*/0 * * * *",
        "every day at 5",
        "H 5 * * *",
    ):
        assert not is_cron(bad), bad
