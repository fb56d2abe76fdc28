"""The parts of a fanned-out Clever rotation, without a worker: windows of landed dates,
prepare -> one rewrite per window -> the resumable rotate-key, and the named errors."""

from __future__ import annotations

import datetime as dt

import pytest

from edulake.core.lake import Lake
from edulake.fanout import windows_of
from edulake.privacy.keys import rotation_in_progress
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.privacy.rotation import (
    RotationIncomplete,
    check_rewriting,
    finish_rotation,
    prepare_rotation,
    rotate_key,
)
from edulake.privacy.scrub import safe_message
from edulake.sources import registry
from tests.clever.helpers import dp_rows, ru_rows, write
from tests.reliability.helpers import (
    DP,
    KEY,
    OTHER_KEY,
    OTHER_KEY_TEXT,
    RU,
    lake_fingerprint,
    run,
)
from tests.reliability.test_keys import _publish

USERS = [("1001", "c001"), ("1002", "c002"), ("", "c003")]
DAYS = ("2022-01-31", "2022-02-01", "2022-04-04")  # March has no reports


def _src(tmp_path) -> str:
    src = str(tmp_path / "src")
    for i, day in enumerate(DAYS):
        write(src, DP.replace("2022-01-03", day), dp_rows(day, USERS[: 2 + i % 2]))
        write(src, RU.replace("2022-01-03", day), ru_rows(day, USERS[:2]))
    return src


def test_windows_hold_landed_dates_only() -> None:
    days = [dt.date.fromisoformat(d) for d in DAYS]
    assert [w.label for w in windows_of(days)] == ["2022-01", "2022-02", "2022-04"]
    two = windows_of(days, 2)
    assert [(w.label, w.start, w.end) for w in two] == [
        ("2022-01..2022-02", dt.date(2022, 1, 31), dt.date(2022, 2, 28)),
        ("2022-03..2022-04", dt.date(2022, 3, 1), dt.date(2022, 4, 4)),
    ]
    assert windows_of([]) == []


def test_prepare_then_windows_then_rotate_equals_a_fresh_build(tmp_path) -> None:
    src = _src(tmp_path)
    lake = Lake(str(tmp_path / "lake"), str(tmp_path / "np"))
    run(lake, src, Pseudonymizer(KEY))
    new = Pseudonymizer(OTHER_KEY)
    with pytest.raises(RotationIncomplete, match="no prepared clever rotation"):
        check_rewriting(lake, new)
    assert not prepare_rotation(lake, new).nothing_to_do
    again = prepare_rotation(lake, new)  # idempotent: nothing cleared twice
    assert not again.nothing_to_do and rotation_in_progress(lake, "clever")["phase"] == "prepared"
    windows = windows_of(registry.clever_landed_dates(lake))
    counts = []
    for w in windows:
        check_rewriting(lake, new)
        done = registry.clever_rewrite_window(lake, new, 0.5, w.start, w.end)
        counts.append(len(done.files))
    assert counts == [2, 2, 2]
    # a window re-run (a child re-run alone) finds its files done
    assert (
        registry.clever_rewrite_window(lake, new, 0.5, windows[0].start, windows[0].end).files == []
    )
    result = rotate_key(lake, new, max_quarantine_share=0.5)
    assert result.files == [] and result.versions  # the children did it all; switched
    _publish(lake, new.key_id)
    finish_rotation(lake, new)

    fresh = Lake(str(tmp_path / "fresh"), str(tmp_path / "fresh-np"))
    run(fresh, src, new)
    assert lake_fingerprint(lake) == lake_fingerprint(fresh)
    assert prepare_rotation(lake, new).nothing_to_do


def test_a_source_without_prepare_is_not_split(tmp_path) -> None:
    lake = Lake(str(tmp_path / "lake"), str(tmp_path / "np"))
    with pytest.raises(RotationIncomplete, match="run rotate-key") as err:
        prepare_rotation(lake, Pseudonymizer(OTHER_KEY), source="libinsight")
    assert "not resumable" in safe_message(err.value)  # named, so the scrubber keeps it


@pytest.mark.usefixtures("prefect_harness")
def test_the_named_error_reaches_the_flow_state(tmp_path, monkeypatch) -> None:
    from flows.clever_maintenance import rotate_key_child

    lake = Lake(str(tmp_path / "lake"), str(tmp_path / "np"))
    run(lake, _src(tmp_path), Pseudonymizer(KEY))
    monkeypatch.setenv("EDULAKE_HMAC_KEY", OTHER_KEY_TEXT)
    state = rotate_key_child(
        report_from=dt.date(2022, 1, 1),
        report_to=dt.date(2022, 1, 31),
        lake_root=str(tmp_path / "lake"),
        np_root=str(tmp_path / "np"),
        return_state=True,
    )
    assert state.is_failed()
    assert "RotationIncomplete" in state.message
    assert "no prepared clever rotation is in progress" in state.message
