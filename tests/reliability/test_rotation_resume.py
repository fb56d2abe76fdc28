"""A Clever rotation killed mid-reprocessing resumes: the files already rewritten into the
writing version are kept (their processed records say so), only the rest is processed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from edulake.core.lake import Lake
from edulake.privacy.keys import recorded_key_id, rotation_in_progress
from edulake.privacy.pseudonym import Pseudonymizer
from tests.envs import without_edulake

from ..clever.helpers import dp_rows, ru_rows, write
from .helpers import DP, KEY, OTHER_KEY, REPO, RU, lake_fingerprint, run

USERS = [("1001", "c001"), ("1002", "c002"), ("", "c003")]

# One rotation in a fresh process; prints how many file versions it reprocessed.
RUNNER = """
import json, sys
from edulake.core.lake import Lake
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.privacy.rotation import finish_rotation, rotate_key
from tests.reliability.helpers import OTHER_KEY
from tests.reliability.test_keys import _publish
lake, new = Lake(sys.argv[1], sys.argv[2]), Pseudonymizer(OTHER_KEY)
result = rotate_key(lake, new, max_quarantine_share=0.5)
_publish(lake, new.key_id)
finish_rotation(lake, new)
print(json.dumps({"reprocessed": len(result.files)}))
"""


def _rotate(
    root: str, np_root: str, crash_at: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = without_edulake()
    if crash_at:
        env["EDULAKE_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, "-c", RUNNER, root, np_root],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_rotation_killed_after_one_file_resumes_with_the_rest(tmp_path):
    src = str(tmp_path / "src")
    # four files on two days: the kill comes after the first one is recorded
    for day in ("2022-01-03", "2022-01-04"):
        write(src, DP.replace("2022-01-03", day), dp_rows(day, USERS))
        write(src, RU.replace("2022-01-03", day), ru_rows(day, USERS[:2]))
    root, np_root = str(tmp_path / "lake"), str(tmp_path / "np")
    lake = Lake(root, np_root)
    run(lake, src, Pseudonymizer(KEY))

    killed = _rotate(root, np_root, "process.recorded:1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    intent = rotation_in_progress(lake, "clever")
    done = _rotate(root, np_root)
    assert done.returncode == 0, done.stderr[-2000:]
    # the file recorded before the kill is not reprocessed: 3 of the 4 remain
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"reprocessed": 3}
    # the clear happened once: the phase is durable in the intent record
    assert intent is not None and intent.get("phase") == "prepared"

    fresh = Lake(str(tmp_path / "fresh"), str(tmp_path / "fresh-np"))
    run(fresh, src, Pseudonymizer(OTHER_KEY))
    assert lake_fingerprint(lake) == lake_fingerprint(fresh)
    assert recorded_key_id(lake, "clever") == OTHER_KEY.key_id
    assert rotation_in_progress(lake, "clever") is None
