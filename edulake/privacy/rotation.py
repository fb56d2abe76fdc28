"""Key rotation: re-pseudonymize one source's stage2p and stage2np with a new key.

The same steps for every registered source (:mod:`edulake.sources.registry`: each gives
its tables and a ``rotation`` hook that knows how to rebuild them):

1. an intent record ``_system/keys/<source>.rotation.json`` (from, to) is written;
   ordinary runs of the source refuse to start while it exists (no run mixes keys);
2. a new **table version** of every table is started (:mod:`edulake.core.versions`): the
   live tables stay as they are while the source's hook writes the new version beside
   them (Clever: every landed report reprocessed from stage1np, lookups and processed
   records rebuilt; LibInsight: each month file re-pseudonymized through its lookups);
3. every file of the new version is checked to carry the new key id, then the pointer
   record switches readers to it in one write (``rotate.switched``);
4. the hook's ``after_switch`` step (LibInsight: the lookups, the CSV exports);
5. the caller republishes every table in full (DuckDB: one file swap; Glue: one
   ``UpdateTable`` per table, its location);
6. :func:`finish_rotation` records the new key, removes the intent record and deletes
   retired versions older than the grace period.

A crash before 3 leaves the old version live: re-running clears the half-written version
and redoes 2-3. A crash after 3 (every live file already carries the new key) skips to 4.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from edulake.core.faults import crashpoint
from edulake.core.lake import Lake, Zone
from edulake.core.versions import (
    begin_rewrite,
    purge_retired,
    rewrite_in_progress,
    switch,
    table_keys,
    writing_version,
)
from edulake.privacy.keys import (
    record_key,
    recorded_key_id,
    refuse_real_key_on_demo_lake,
    rotation_in_progress,
    rotation_record_key,
)
from edulake.privacy.lookup import KeyMismatchError
from edulake.privacy.pseudonym import Pseudonymizer


@dataclass
class RotationResult:
    """What a rotation of one source did."""

    from_key_id: str | None
    to_key_id: str
    source: str = "clever"
    files: list[Any] = field(default_factory=list)  # per-file results (Clever: FileResult)
    rewritten: int = 0  # stage2p files written by a hook without per-file results
    rebuilt_older_versions: int = 0
    nothing_to_do: bool = False
    versions: dict[str, int] = field(default_factory=dict)  # table -> version switched to
    resumed_after_switch: bool = False

    @property
    def failed(self) -> list[Any]:
        return [f for f in self.files if f.status not in ("processed", "empty")]


def _tables(lake: Lake, source: str) -> list[str]:
    from edulake.sources import registry

    return registry.get(source).rotation.tables(lake)


def stage2p_key_ids(
    lake: Lake, source: str = "clever", *, writing: bool = False
) -> dict[str, tuple[str, str]]:
    """The source's stage2p files -> (key id, source sha256), from their metadata.

    The live version of each table, or (``writing``) the version a rewrite is writing."""
    out = {}
    for table in _tables(lake, source):
        version = writing_version(lake, source, table) if writing else None
        for key in table_keys(lake, source, table, version):
            if not key.endswith(".parquet"):
                continue
            with lake.open_input_file(Zone.STAGE2P, key) as f:
                meta = pq.read_schema(f).metadata or {}
            out[key] = (
                meta.get(b"edulake.key_id", b"").decode(),
                meta.get(b"edulake.source_sha256", b"").decode(),
            )
    return out


def rotate_key(
    lake: Lake,
    new: Pseudonymizer,
    *,
    max_quarantine_share: float = 0.01,
    source: str = "clever",
) -> RotationResult:
    """Steps 1-4: build the new version with ``new`` and switch to it (the caller
    publishes, then calls :func:`finish_rotation`)."""
    from edulake.sources import registry

    hooks = registry.get(source).rotation
    refuse_real_key_on_demo_lake(lake, source, new.key_id)
    recorded = recorded_key_id(lake, source)
    intent = rotation_in_progress(lake, source)
    if intent and intent["to"] != new.key_id:
        raise KeyMismatchError(
            f"a {source} rotation to key {intent['to']} is in progress; finish it with that "
            f"key (this run's key is {new.key_id})"
        )
    if not intent and recorded in (None, new.key_id):
        return RotationResult(recorded, new.key_id, source, nothing_to_do=True)
    if not intent:
        lake.write_json(
            Zone.SYSTEM,
            rotation_record_key(source),
            {"from": recorded, "to": new.key_id, "started_at": dt.datetime.now(dt.UTC).isoformat()},
        )
        intent = {"from": recorded, "to": new.key_id}
    result = RotationResult(intent["from"], new.key_id, source)
    crashpoint("rotate.started")
    live = stage2p_key_ids(lake, source)
    switched = not rewrite_in_progress(lake, source) and all(
        kid == new.key_id for kid, _ in live.values()
    )
    if switched:
        result.resumed_after_switch = True  # a run killed after the switch: finish it
    else:
        begin_rewrite(lake, source, hooks.tables(lake))
        hooks.rewrite(lake, new, max_quarantine_share, result)
        left = [k for k, (kid, _) in stage2p_key_ids(lake, source, writing=True).items()
                if kid != new.key_id]  # fmt: skip
        if left:
            raise RuntimeError(
                f"{len(left)} stage2p file(s) of the new {source} table version do not carry "
                "the new key (nothing was switched: readers still see the old version); "
                "re-run the rotation"
            )
        crashpoint("rotate.rewritten")
        result.versions = switch(lake, source)
        crashpoint("rotate.switched")
    if hooks.after_switch is not None:
        hooks.after_switch(lake, new)
    return result


def finish_rotation(
    lake: Lake, new: Pseudonymizer, *, source: str = "clever", grace_s: float | None = None
) -> int:
    """Step 6, after every table was republished: the new key becomes the source's key.

    Retired versions older than ``grace_s`` (default: the ``versions.grace_s`` setting)
    are deleted; returns how many files."""
    if grace_s is None:
        from edulake.core.settings import get_settings

        grace_s = get_settings().versions.grace_s
    record_key(lake, source, new.key_id)
    crashpoint("rotate.recorded")
    lake.delete(Zone.SYSTEM, rotation_record_key(source))
    return purge_retired(lake, source, grace_s)
