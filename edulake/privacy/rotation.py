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

Resumable (Clever): a source whose hooks have a ``prepare`` step (Clever: delete the
lookups and processed records) starts step 2 once. When the new version is begun and the
source prepared, the intent record gains ``"phase": "prepared"``; a re-run then keeps
what the writing version already holds and the hook's ``rewrite`` does only what is left
(Clever: the landed files without a processed record of the new key). A source without
``prepare`` (LibInsight) restarts step 2: the half-written version is cleared.

A crash before the phase is recorded leaves the old version live: re-running clears the
half-written version and redoes 2-3. A crash after 3 (every live file already carries the
new key) skips to 4.

The same steps split for a fan-out (``rotate-key-months``): :func:`prepare_rotation`
(steps 1-2 start), then child runs each rewrite a window of the landed files, then
:func:`rotate_key` resumes: it finds the work done, rewrites any leftovers and switches.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from edulake.core.errors import DeterministicError
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

PREPARED = "prepared"  # the intent record's phase once step 2 has begun (resumable sources)


class RotationIncomplete(DeterministicError):
    """A rotation cannot switch: some of the new version is missing or not under the new
    key. Nothing was switched (readers still see the old version); the message says what
    to do. Built from counts and source names only."""


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


def _start(lake: Lake, new: Pseudonymizer, source: str) -> RotationResult:
    """Step 1: check the key, write the intent record (or find it); what it found."""
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
        intent = {
            "from": recorded,
            "to": new.key_id,
            "started_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        lake.write_json(Zone.SYSTEM, rotation_record_key(source), intent)
    return RotationResult(intent["from"], new.key_id, source)


def _switched(lake: Lake, new: Pseudonymizer, source: str) -> bool:
    """Whether a killed run already switched (no rewrite open, every live file new)."""
    live = stage2p_key_ids(lake, source)
    return not rewrite_in_progress(lake, source) and all(
        kid == new.key_id for kid, _ in live.values()
    )


def _prepare(lake: Lake, source: str) -> None:
    """Step 2's start: begin the new version and prepare the source, once for a
    resumable source (the phase is then recorded in the intent record)."""
    from edulake.sources import registry

    hooks = registry.get(source).rotation
    intent = rotation_in_progress(lake, source) or {}
    if (
        hooks.prepare is not None
        and intent.get("phase") == PREPARED
        and rewrite_in_progress(lake, source)
    ):
        return  # resumed: keep what the writing version holds
    begin_rewrite(lake, source, hooks.tables(lake))
    if hooks.prepare is not None:
        hooks.prepare(lake)
        lake.write_json(Zone.SYSTEM, rotation_record_key(source), intent | {"phase": PREPARED})
        crashpoint("rotate.prepared")


def prepare_rotation(lake: Lake, new: Pseudonymizer, *, source: str = "clever") -> RotationResult:
    """Steps 1-2 start, for a fan-out: the intent, the new version begun, the source
    prepared (idempotent). ``nothing_to_do`` or ``resumed_after_switch`` say when there is
    no rewrite left for children to do."""
    from edulake.sources import registry

    if registry.get(source).rotation.prepare is None:
        raise RotationIncomplete(
            f"the {source} rotation is not resumable, so it cannot be split into child "
            "runs: run rotate-key for it"
        )
    result = _start(lake, new, source)
    if result.nothing_to_do:
        return result
    crashpoint("rotate.started")
    if _switched(lake, new, source):
        result.resumed_after_switch = True
    else:
        _prepare(lake, source)
    return result


def check_rewriting(lake: Lake, new: Pseudonymizer, source: str = "clever") -> None:
    """Refuse a child's rewrite unless a rotation to ``new`` is prepared and open."""
    intent = rotation_in_progress(lake, source)
    if not intent or intent.get("phase") != PREPARED or not rewrite_in_progress(lake, source):
        raise RotationIncomplete(
            f"no prepared {source} rotation is in progress: start the parent run "
            "(rotate-key-months), which prepares it before its children"
        )
    if intent["to"] != new.key_id:
        raise KeyMismatchError(
            f"a {source} rotation to key {intent['to']} is in progress; finish it with that "
            f"key (this run's key is {new.key_id})"
        )


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
    result = _start(lake, new, source)
    if result.nothing_to_do:
        return result
    crashpoint("rotate.started")
    if _switched(lake, new, source):
        result.resumed_after_switch = True  # a run killed after the switch: finish it
    else:
        _prepare(lake, source)
        hooks.rewrite(lake, new, max_quarantine_share, result)
        left = [k for k, (kid, _) in stage2p_key_ids(lake, source, writing=True).items()
                if kid != new.key_id]  # fmt: skip
        if left:
            raise RotationIncomplete(
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
