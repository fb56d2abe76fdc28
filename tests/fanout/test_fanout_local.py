"""Fan-out on the local stack: a real Prefect server, the process pool, a real sshd.

A 5-district consortium runs as one clever-consortium parent and five clever-child runs on
the process worker (one sshd; per district its own folder, its own client key and its own
pseudonymization key block; one district's block pins a wrong host key). A month-split
backfill runs with one child SIGKILLed at a crash point, then that window re-run alone.
Each end state is compared with plain single runs (stage2p, lookups, catalog checksums).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest

from deployments.local.stack import FANOUT_LIMIT, FANOUT_SLOTS, LocalStack
from edulake.core import clock
from edulake.core.lake import Lake, Zone
from edulake.demo.clever_testdata import generate_reports
from tests.concurrency.test_pairs import everything
from tests.envs import without_edulake
from tests.reliability.helpers import REPO
from tests.servers.prefect_server import prefect_server
from tests.servers.sshd import KeyPair, SshdServer, running_sshd, sshd_available

pytestmark = pytest.mark.slow

DISTRICTS = ["albany", "troy", "cohoes", "colonie", "delmar"]
BAD_HOST_KEY = "cohoes"
DEPLOYMENTS = (
    "clever-participation/clever-child",
    "clever-consortium/clever-consortium",
    "clever-backfill-months/clever-backfill-months",
    "rotate-key-months/rotate-key-months",
    "rotate-key-child/rotate-key-child",
)
# What every child run gets from the worker (the test data is small and old).
WORKER_ENV = {
    "EDULAKE_LEASE__POLL_S": "0.1",
    "EDULAKE_LEASE__PREFECT_LIMIT": "",
    "EDULAKE_FAIL_REPORT_AGE_DAYS": "100000",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    # An installation-wide key on the worker: a trap, no district may fall back to it.
    "EDULAKE_HMAC_KEY": secrets.token_hex(32),
}

RUN = """
import json, sys
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.deployments import run_deployment

run = run_deployment(sys.argv[1], parameters=json.loads(sys.argv[2]), timeout=900, poll_interval=2)
with get_client(sync_client=True) as client:
    arts = client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
    )
    children = client.read_flow_runs()
print(json.dumps({
    "state": run.state.type.value,
    "message": run.state.message,
    "artifacts": {a.key: a.data for a in arts if a.key},
    "children": {
        r.name: r.state.type.value for r in children
        if r.parent_task_run_id is not None and r.state is not None
    },
}))
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Server + process worker with the fan-out deployments of prefect.yaml."""
    with prefect_server(tmp_path_factory.mktemp("prefect"), extra_env=WORKER_ENV) as running:
        running.create_pool()
        running.create_lake_limit(FANOUT_LIMIT, FANOUT_SLOTS)  # as `deployments.local up`
        running.deploy_all(DEPLOYMENTS)
        running.start_worker()
        yield running


@pytest.fixture(scope="module")
def sshd() -> Iterator[SshdServer]:
    if not sshd_available():
        pytest.fail("OpenSSH server missing: apt-get install -y openssh-server")
    with running_sshd() as server:
        yield server


def run_parent(stack: LocalStack, deployment: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run a parent deployment on the worker to its end; state, artifacts, children."""
    out = stack.python("-c", RUN, deployment, json.dumps(params, default=str), timeout=900)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def flow_run(stack: LocalStack, key: str, *args: str) -> subprocess.Popen[str]:
    """A plain flow run in its own process (the concurrency tests' runner: ``clever``
    builds a lake from a folder, ``rotate`` is a serial rotate-key), key ``key``, on the
    stack's server."""
    env = without_edulake(stack.env())
    env.update({**WORKER_ENV, "EDULAKE_HMAC_KEY": key})
    cmd = [sys.executable, "-m", "tests.concurrency.runner", *args]
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def reference_run(
    stack: LocalStack, lake: str, np_root: str, src: Path, key: str, *days: str
) -> subprocess.Popen[str]:
    """A plain single clever-participation run over a folder: the state a child must end in."""
    return flow_run(stack, key, "clever", lake, np_root, str(src), *days)


def save_secret(stack: LocalStack, tmp_path: Path, name: str, value: str) -> None:
    """Save a Secret block on the stack's server (the value passes through a file that is
    removed at once, never through argv)."""
    path = _write(tmp_path / f"{name}.secret", value)
    stack.python(
        "-c",
        "import sys; from prefect.blocks.system import Secret; "
        "Secret(value=open(sys.argv[1]).read()).save(sys.argv[2], overwrite=True)",
        str(path),
        name,
    )
    path.unlink()


def finish(proc: subprocess.Popen[str]) -> None:
    """Wait for a reference run; it must succeed."""
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-4000:]


def pseudonyms(lake_root: str, np_root: str) -> set[str]:
    """Every pseudonym in a district's stage2p tables."""
    lake = Lake(lake_root, np_root)
    out: set[str] = set()
    for table in ("daily_participation", "resource_usage"):
        t = ds.dataset(
            lake.fs_path(Zone.STAGE2P, f"clever/{table}"), format="parquet", partitioning="hive"
        ).to_table()
        for col in t.column_names:
            if col.endswith("_pseudonym"):
                out |= {v for v in t[col].to_pylist() if v}
    return out


SAVE_BLOCKS = """
import json, sys
from prefect.blocks.system import Secret
from edulake.connectors.blocks import SftpServer
for b in json.loads(open(sys.argv[1]).read()):
    SftpServer(**b["sftp"]).save(b["sftp_name"], overwrite=True)
    Secret(value=b["key"]).save(b["key_name"], overwrite=True)
"""


def test_five_district_consortium(stack: LocalStack, sshd: SshdServer, tmp_path: Path) -> None:
    start = clock.today() - dt.timedelta(days=3)
    keys = {d: secrets.token_hex(32) for d in DISTRICTS}
    blocks = []
    wrong_host = KeyPair.generate()
    for d in DISTRICTS:
        folder = sshd.root / d
        # The same students in every district's folder (so only the keys keep pseudonyms
        # apart), each folder reached with the district's own login key.
        generate_reports(
            str(folder), start=start, days=2, students=25, teachers=3, staff=1, schools=1
        )
        client = KeyPair.generate(f"district-{d}")
        with (sshd.workdir / "authorized_keys").open("a") as f:
            f.write(client.public_line + "\n")
        host_key = (
            f"[{sshd.host}]:{sshd.port} {wrong_host.public_line}"
            if d == BAD_HOST_KEY
            else sshd.host_key_line
        )
        sftp = {
            "host": sshd.host,
            "port": sshd.port,
            "username": sshd.user,
            "private_key": client.private_text,
            "host_key": host_key,
            "remote_root": str(folder),
            "connect_timeout": 5.0,
        }
        blocks.append(
            {
                "sftp": sftp,
                "sftp_name": f"edulake-{d}-sftp",
                "key": keys[d],
                "key_name": f"edulake-{d}-hmac-key",
            }
        )
    spec = tmp_path / "blocks.json"
    spec.write_text(json.dumps(blocks))
    stack.python("-c", SAVE_BLOCKS, str(spec))
    spec.unlink()
    base = tmp_path / "districts"
    (tmp_path / "consortium.yaml").write_text(
        "consortium: capital-region\n"
        "defaults:\n"
        f"  lake_root: {base}/{{district}}/lake\n"
        f"  np_root: {base}/{{district}}/np\n"
        "  sftp_block: edulake-{district}-sftp\n"
        "  hmac_key_block: edulake-{district}-hmac-key\n"
        "districts:\n" + "".join(f"  - id: {d}\n    name: {d.title()} SD\n" for d in DISTRICTS)
    )

    result = run_parent(
        stack,
        "clever-consortium/clever-consortium",
        {
            "consortium_file": str(tmp_path / "consortium.yaml"),
            "max_children": 3,
            "child_parameters": {"max_quarantine_share": 0.5},
        },
    )

    # The bad host key failed its district only; the parent says which, and is not green.
    assert result["state"] == "FAILED"
    assert "1 of 5 districts failed: cohoes (Failed (HostKeyError))" in result["message"]
    table = {r["child"]: r for r in json.loads(result["artifacts"]["clever-consortium"])}
    assert set(table) == set(DISTRICTS)
    assert table[BAD_HOST_KEY]["failed"] and table[BAD_HOST_KEY]["landed"] == 0
    for d in DISTRICTS:
        if d != BAD_HOST_KEY:
            assert not table[d]["failed"], table[d]
            assert table[d]["landed"] == 12 and table[d]["rows"] > 0, table
            assert table[d]["stale"] is False
    assert result["children"] == {
        d: "FAILED" if d == BAD_HOST_KEY else "COMPLETED" for d in DISTRICTS
    }
    assert not (base / BAD_HOST_KEY / "np" / "stage1np").exists()
    assert not (base / BAD_HOST_KEY / "lake" / "stage1np").exists()
    # One writer per district lake (created by the parent), the fan-out bound kept as made.
    limits = stack.prefect("gcl", "ls")
    assert all(f"edulake-lake-{d}" in limits for d in DISTRICTS), limits

    # Every district's lake equals its single-district run (its folder, its key).
    good = [d for d in DISTRICTS if d != BAD_HOST_KEY]
    refs = {d: tmp_path / "ref" / d for d in good}
    procs = [
        reference_run(stack, str(refs[d] / "lake"), str(refs[d] / "np"), sshd.root / d, keys[d])
        for d in good
    ]
    for p in procs:
        finish(p)
    seen: dict[str, set[str]] = {}
    for d in good:
        got = everything(str(base / d / "lake"), str(base / d / "np"))
        assert got == everything(str(refs[d] / "lake"), str(refs[d] / "np")), d
        seen[d] = pseudonyms(str(base / d / "lake"), str(base / d / "np"))
        assert seen[d]
    # No pseudonym is shared across districts: the same students, hashed with own keys.
    names = sorted(seen)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not seen[a] & seen[b], (a, b)


def test_backfill_by_month_with_a_crashed_child_rerun_alone(
    stack: LocalStack, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    # Four days across a month end: two windows, 2022-01 and 2022-02.
    generate_reports(
        str(src), start=dt.date(2022, 1, 30), days=4, students=25, teachers=3, staff=1, schools=1
    )
    key = secrets.token_hex(32)
    save_secret(stack, tmp_path, "backfill-key", key)
    lake, np_root = str(tmp_path / "x" / "lake"), str(tmp_path / "x" / "np")

    params: dict[str, Any] = {
        "report_from": "2022-01-30",
        "report_to": "2022-02-02",
        "max_children": 2,
        "child_parameters": {
            "source": "folder",
            "source_path": str(src),
            "hmac_key_block": "backfill-key",
            "lake_root": lake,
            "np_root": np_root,
            "max_quarantine_share": 0.5,
        },
    }
    crashed = run_parent(
        stack,
        "clever-backfill-months/clever-backfill-months",
        {
            **params,
            "child_job_variables": {
                "2022-01": {"env": {"EDULAKE_CRASH_AT": "process.lookups_merged"}}
            },
        },
    )
    assert crashed["state"] == "FAILED"
    assert "1 of 2 windows failed: 2022-01 (Crashed)" in crashed["message"]
    assert 'only= ["2022-01"]' in crashed["message"]
    rows = {r["child"]: r for r in json.loads(crashed["artifacts"]["clever-backfill-months"])}
    assert not rows["2022-02"]["failed"] and rows["2022-02"]["landed"] > 0

    rerun = run_parent(
        stack, "clever-backfill-months/clever-backfill-months", {**params, "only": ["2022-01"]}
    )
    assert rerun["state"] == "COMPLETED", rerun["message"]
    (row,) = json.loads(rerun["artifacts"]["clever-backfill-months"])
    assert row["child"] == "2022-01" and not row["failed"]

    ref = tmp_path / "serial"
    finish(
        reference_run(
            stack, str(ref / "lake"), str(ref / "np"), src, key, "2022-01-30", "2022-02-02"
        )
    )
    assert everything(lake, np_root) == everything(str(ref / "lake"), str(ref / "np"))
    leftovers = [p for p in Path(lake, "_tmp").rglob("*") if p.is_file()]
    assert not leftovers


def test_rotation_by_month_with_a_crashed_child_rerun_alone(
    stack: LocalStack, tmp_path: Path
) -> None:
    from edulake.privacy.keys import recorded_key_id, rotation_in_progress
    from edulake.privacy.pseudonym import PseudonymKey
    from edulake.privacy.rotation import stage2p_key_ids

    src = tmp_path / "src"
    # One day in each of three months (and none in between): three windows.
    for day in (dt.date(2022, 1, 31), dt.date(2022, 2, 14), dt.date(2022, 4, 4)):
        generate_reports(str(src), start=day, days=1, students=15, teachers=2, staff=1, schools=1)
    old, new = secrets.token_hex(32), secrets.token_hex(32)
    fanned, serial = tmp_path / "fanned", tmp_path / "serial"
    roots = {p: (str(p / "lake"), str(p / "np")) for p in (fanned, serial)}
    for proc in [flow_run(stack, old, "clever", *roots[p], str(src)) for p in roots]:
        finish(proc)  # two equal lakes under the old key
    save_secret(stack, tmp_path, "rotation-key", new)
    lake, np_root = roots[fanned]
    # the serial rotate-key of the copy runs meanwhile (another lake: another lease)
    reference = flow_run(stack, new, "rotate", *roots[serial])
    params: dict[str, Any] = {
        "lake_root": lake,
        "np_root": np_root,
        "hmac_key_block": "rotation-key",
        "max_children": 2,
    }
    crashed = run_parent(
        stack,
        "rotate-key-months/rotate-key-months",
        {
            **params,
            "child_job_variables": {"2022-02": {"env": {"EDULAKE_CRASH_AT": "process.recorded:1"}}},
        },
    )
    assert crashed["state"] == "FAILED"
    assert "1 of 3 windows failed: 2022-02 (Crashed)" in crashed["message"]
    assert 'only= ["2022-02"]' in crashed["message"]
    rows = {r["child"]: r for r in json.loads(crashed["artifacts"]["rotate-key-months"])}
    assert set(rows) == {"2022-01", "2022-02", "2022-04"}
    assert not rows["2022-01"]["failed"] and rows["2022-01"]["rows"] > 0
    # nothing switched, the rotation left in progress (ordinary runs refuse meanwhile)
    assert rotation_in_progress(Lake(lake, np_root), "clever") is not None

    rerun = run_parent(
        stack, "rotate-key-months/rotate-key-months", {**params, "only": ["2022-02"]}
    )
    assert rerun["state"] == "COMPLETED", rerun["message"]
    (row,) = json.loads(rerun["artifacts"]["rotate-key-months"])
    assert row["child"] == "2022-02" and not row["failed"] and row["rows"] > 0

    finish(reference)
    assert everything(lake, np_root) == everything(*roots[serial])
    done = Lake(lake, np_root)
    new_id = PseudonymKey.from_text(new).key_id
    assert {kid for kid, _ in stage2p_key_ids(done).values()} == {new_id}
    assert recorded_key_id(done, "clever") == new_id
    assert rotation_in_progress(done, "clever") is None


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
