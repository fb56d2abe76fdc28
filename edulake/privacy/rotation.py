"""Key rotation: re-pseudonymize a source's stage2p and rebuild stage2np with a new key.

Done from the raw files in stage1np, so nothing of the old key survives:

1. an intent record ``_system/keys/<source>.rotation.json`` (from, to) is written;
   ordinary runs refuse to start while it exists (no run mixes keys);
2. the lookups and the processed records are deleted (they are rebuilt below);
3. the newest landed version of every report is processed again with the new key (its
   stage2p files are replaced at the same keys, atomically per file); then any stage2p
   file still under the old key (the output of an older version whose newer version
   failed) is rebuilt from the version that produced it (``edulake.source_sha256``);
4. the caller republishes every table in full;
5. :func:`finish_rotation` records the new key and removes the intent record.

A crash anywhere leaves the intent record: re-running the rotation redoes 2-5 from the
start (every step is idempotent). The DuckDB catalog keeps serving the old, consistent
tables until step 4 replaces them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from edulake.core.faults import crashpoint
from edulake.core.lake import Lake, Zone
from edulake.core.landing import Ledger
from edulake.privacy.keys import (
    record_key,
    recorded_key_id,
    refuse_real_key_on_demo_lake,
    rotation_in_progress,
    rotation_record_key,
)
from edulake.privacy.lookup import KeyMismatchError
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.sources.clever import pipeline
from edulake.sources.clever.process import SOURCE, FileResult


@dataclass
class RotationResult:
    """What a rotation did."""

    from_key_id: str | None
    to_key_id: str
    files: list[FileResult] = field(default_factory=list)
    rebuilt_older_versions: int = 0
    nothing_to_do: bool = False

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status not in ("processed", "empty")]


def stage2p_key_ids(lake: Lake) -> dict[str, tuple[str, str]]:
    """Every stage2p file of the source -> (key id, source sha256) from its metadata."""
    out = {}
    for obj in lake.list(Zone.STAGE2P, SOURCE):
        if not obj.key.endswith(".parquet"):
            continue
        with lake.open_input_file(Zone.STAGE2P, obj.key) as f:
            meta = pq.read_schema(f).metadata or {}
        out[obj.key] = (
            meta.get(b"edulake.key_id", b"").decode(),
            meta.get(b"edulake.source_sha256", b"").decode(),
        )
    return out


def rotate_key(
    lake: Lake, new: Pseudonymizer, *, max_quarantine_share: float = 0.01
) -> RotationResult:
    """Steps 1-3: re-pseudonymize everything with ``new`` (the caller publishes, then finishes)."""
    refuse_real_key_on_demo_lake(lake, SOURCE, new.key_id)
    recorded = recorded_key_id(lake, SOURCE)
    intent = rotation_in_progress(lake, SOURCE)
    if intent and intent["to"] != new.key_id:
        raise KeyMismatchError(
            f"a rotation to key {intent['to']} is in progress; finish it with that key "
            f"(this run's key is {new.key_id})"
        )
    if not intent and recorded in (None, new.key_id):
        return RotationResult(recorded, new.key_id, nothing_to_do=True)
    if not intent:
        lake.write_json(
            Zone.SYSTEM,
            rotation_record_key(SOURCE),
            {"from": recorded, "to": new.key_id, "started_at": dt.datetime.now(dt.UTC).isoformat()},
        )
        intent = {"from": recorded, "to": new.key_id}
    result = RotationResult(intent["from"], new.key_id)
    crashpoint("rotate.started")
    for obj in lake.list(Zone.STAGE2NP, SOURCE):
        if obj.key.endswith("_lookup/lookup.parquet"):
            lake.delete(Zone.STAGE2NP, obj.key)
    lake.delete_prefix(Zone.SYSTEM, f"processed/{SOURCE}")
    crashpoint("rotate.cleared")
    latest = pipeline.pending(lake)
    done = pipeline.process_pending(
        lake, latest, new, max_quarantine_share=max_quarantine_share, check_key=False
    )
    result.files += done.files
    crashpoint("rotate.reprocessed")
    stale = {sha for kid, sha in stage2p_key_ids(lake).values() if kid != new.key_id}
    if stale:
        by_sha = {e.sha256: e for e in Ledger(lake, SOURCE).entries()}
        older = [by_sha[s] for s in sorted(stale) if s in by_sha]
        again = pipeline.process_pending(
            lake, older, new, max_quarantine_share=1.0, check_key=False
        )
        result.files += again.files
        result.rebuilt_older_versions = len(older)
    left = [k for k, (kid, _) in stage2p_key_ids(lake).items() if kid != new.key_id]
    if left:
        raise RuntimeError(
            f"{len(left)} stage2p file(s) could not be rebuilt with the new key (their "
            f"source versions are missing from the ledger), e.g. {left[0]}: restore the raw "
            "files or delete those outputs, then re-run the rotation"
        )
    return result


def finish_rotation(lake: Lake, new: Pseudonymizer) -> None:
    """Step 5, after every table was republished: the new key becomes the lake's key."""
    record_key(lake, SOURCE, new.key_id)
    crashpoint("rotate.recorded")
    lake.delete(Zone.SYSTEM, rotation_record_key(SOURCE))
