"""A consortium of districts: one YAML file, one validated model, one child run per district.

An education service agency (or a state) runs edulake for many districts. Each district
is its own tenant: its own SFTP block (its Clever login), its own pseudonymization key
block (so no pseudonym links two districts), its own lake and protected roots and its own
Glue databases (``edulake_<district>_clever``). The file::

    consortium: capital-region-esa
    defaults:                       # every field of a district, with {district} = its id
      lake_root: s3://edulake-{district}/lake
      np_root: s3://edulake-{district}-np/np
      sftp_block: edulake-{district}-sftp
      hmac_key_block: edulake-{district}-hmac-key
      schedule: "30 5 * * *"
      timezone: America/New_York
    districts:
      - id: albany
        name: Albany City SD
      - id: troy
        name: Troy City SD
        timezone: America/Chicago   # a field given here wins over defaults

The ``clever-consortium`` flow (flows/clever_consortium.py) reads it and fans out one
``clever-participation`` child run per district (:func:`District.child_parameters`).
Validation errors are one line each and name the field, never its value.
"""

from __future__ import annotations

import re
import zoneinfo
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edulake.core.settings import ConfigError

# A district id names Glue databases (lower case, digits, underscore), limits and folders.
DISTRICT_ID = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
# Five cron fields, each a list of *, N or N-M with an optional /step (what Prefect's
# cron schedules take, minus the names and random/hashed forms); bounds per field.
_CRON_ITEM = re.compile(r"^(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?$")
_CRON_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
TEMPLATED = ("lake_root", "np_root", "sftp_block", "hmac_key_block", "glue_database_prefix")


class ConsortiumError(ConfigError):
    """The consortium file is missing, not YAML, or not a valid consortium (one line per problem)."""


class District(BaseModel):
    """One district: where its data comes from, which key it is hashed with, where it lands."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Short id: lower case, digits, _ (names Glue databases).")
    name: str = Field(min_length=1, description="Display name.")
    sftp_block: str = Field(min_length=1, description="SftpServer block: the district's login.")
    hmac_key_block: str = Field(min_length=1, description="Secret block: the district's key.")
    lake_root: str = Field(min_length=1, description="The district's lake root.")
    np_root: str = Field(min_length=1, description="The district's protected root.")
    glue_database_prefix: str = Field(
        "", description="Glue database prefix (default edulake_<id>: edulake_<id>_clever)."
    )
    aws_credentials_block: str | None = None
    schedule: str = Field("30 5 * * *", description="Cron of the district's daily run.")
    timezone: str = "America/New_York"

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not DISTRICT_ID.match(value):
            raise ValueError("must be lower case letters, digits or _, starting with a letter")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        if not is_cron(value):
            raise ValueError("is not a cron expression (five fields, e.g. '30 5 * * *')")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError("is not an IANA time zone (e.g. America/New_York)") from None
        return value

    @model_validator(mode="after")
    def _roots(self) -> District:
        if self.lake_root.rstrip("/") == self.np_root.rstrip("/"):
            raise ValueError("np_root must differ from lake_root (protected zones apart)")
        return self

    @property
    def database_prefix(self) -> str:
        """Glue database prefix: ``edulake_<id>`` unless the file says otherwise."""
        return self.glue_database_prefix or f"edulake_{self.id}"

    @property
    def glue_database(self) -> str:
        """The district's Clever Glue database (``edulake_<id>_clever``)."""
        return f"{self.database_prefix}_clever"

    @property
    def lake_limit(self) -> str:
        """The global concurrency limit of this district's lake (one writer per lake)."""
        return f"edulake-lake-{self.id}"

    def child_parameters(self) -> dict[str, Any]:
        """The ``clever-participation`` parameters of this district's child run."""
        params: dict[str, Any] = {
            "source": "sftp",
            "sftp_block": self.sftp_block,
            "hmac_key_block": self.hmac_key_block,
            "lake_root": self.lake_root,
            "np_root": self.np_root,
        }
        if self.aws_credentials_block:
            params["aws_credentials_block"] = self.aws_credentials_block
        return params

    def child_env(self) -> dict[str, str]:
        """Settings of the child's process (job variable ``env``): its Glue databases, its
        lake's concurrency limit (so districts do not queue behind one another), and no
        installation-wide key: a district whose key block is missing fails, instead of
        falling back to EDULAKE_HMAC_KEY, which would link it with every such district."""
        return {
            "EDULAKE_CATALOG__GLUE_DATABASE_PREFIX": self.database_prefix,
            "EDULAKE_LEASE__PREFECT_LIMIT": self.lake_limit,
            "EDULAKE_HMAC_KEY": "",
        }


class Consortium(BaseModel):
    """Districts run together: unique ids, and nothing shared that would link two of them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    consortium: str = Field(min_length=1, description="Name of the consortium.")
    districts: list[District] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        """Fill each district from ``defaults``, with {district} replaced by its id."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        defaults = data.pop("defaults", None) or {}
        if not isinstance(defaults, dict):
            raise ValueError("defaults must be a mapping of district fields")
        districts = data.get("districts")
        if isinstance(districts, list):
            filled = []
            for d in districts:
                if isinstance(d, dict):
                    did = d.get("id")
                    merged = {**defaults, **d}
                    if isinstance(did, str):
                        for key in TEMPLATED:
                            if isinstance(merged.get(key), str):
                                merged[key] = merged[key].replace("{district}", did)
                    d = merged
                filled.append(d)
            data["districts"] = filled
        return data

    @model_validator(mode="after")
    def _apart(self) -> Consortium:
        """One key, one login, one lake per district: a shared one would link districts."""
        for attr, why in (
            ("id", "district ids must be unique"),
            ("hmac_key_block", "one key per district: a shared key links pseudonyms"),
            ("sftp_block", "one SFTP login per district"),
            ("lake_root", "one lake per district"),
            ("np_root", "one protected root per district"),
            ("database_prefix", "one set of Glue databases per district"),
        ):
            seen: dict[str, int] = {}
            for i, d in enumerate(self.districts):
                value = str(getattr(d, attr)).rstrip("/")
                if value in seen:
                    raise ValueError(
                        f"districts[{i}].{attr} repeats districts[{seen[value]}]: {why}"
                    )
                seen[value] = i
        roots = {d.lake_root.rstrip("/"): i for i, d in enumerate(self.districts)}
        for i, d in enumerate(self.districts):
            j = roots.get(d.np_root.rstrip("/"))
            if j is not None:
                raise ValueError(f"districts[{i}].np_root is districts[{j}].lake_root")
        return self

    def select(self, ids: list[str] | None = None, schedule: str | None = None) -> list[District]:
        """The districts to run: those named (all if None), or those on one schedule slot."""
        chosen = list(self.districts)
        if ids:
            known = {d.id for d in chosen}
            unknown = [i for i in ids if i not in known]
            if unknown:
                raise ConsortiumError(f"no such district in the consortium: {', '.join(unknown)}")
            chosen = [d for d in chosen if d.id in ids]
        if schedule:
            chosen = [d for d in chosen if schedule_slot(d) == schedule]
        return chosen

    def schedule_slots(self) -> list[dict[str, str]]:
        """One deployment schedule per distinct (cron, time zone), with its slot parameter."""
        slots: dict[str, dict[str, str]] = {}
        for d in self.districts:
            slots.setdefault(
                schedule_slot(d),
                {"cron": d.schedule, "timezone": d.timezone, "slot": schedule_slot(d)},
            )
        return list(slots.values())


def is_cron(text: str) -> bool:
    """Whether ``text`` is a five-field numeric cron expression within each field's bounds."""
    fields = text.split()
    if len(fields) != 5:
        return False
    for field, (low, high) in zip(fields, _CRON_BOUNDS, strict=True):
        for item in field.split(","):
            m = _CRON_ITEM.match(item)
            if not m:
                return False
            first, last, step = m.group(2), m.group(3), m.group(4)
            values = [int(v) for v in (first, last) if v is not None]
            if any(not low <= v <= high for v in values) or (step is not None and int(step) < 1):
                return False
            if len(values) == 2 and values[0] > values[1]:
                return False
    return True


def schedule_slot(district: District) -> str:
    """The name of a district's schedule: ``<cron>@<time zone>``."""
    return f"{district.schedule}@{district.timezone}"


def _lines(exc: ValidationError) -> list[str]:
    """One line per problem: where, and what is wrong; never the value given."""
    out = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ""
        for part in err["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        msg = str(err["msg"]).removeprefix("Value error, ")
        out.append(f"{loc}: {msg}" if loc else msg)
    return out


def parse_consortium(data: Any, origin: str = "consortium") -> Consortium:
    """A validated consortium from parsed YAML; ConsortiumError with one line per problem."""
    try:
        return Consortium.model_validate(data)
    except ValidationError as exc:
        lines = _lines(exc)
        raise ConsortiumError(
            f"{origin}: {len(lines)} problem(s):\n" + "\n".join(f"  {origin}: {x}" for x in lines)
        ) from None


def load_consortium(path: str | Path) -> Consortium:
    """Read and validate a consortium file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConsortiumError(
            f"{p}: cannot read the consortium file ({type(exc).__name__})"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConsortiumError(f"{p}: not valid YAML{where}") from None
    return parse_consortium(data, origin=str(p))


def main(argv: list[str] | None = None) -> int:
    """``python -m edulake.tenants check|schedules FILE``: validate, or print schedules."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m edulake.tenants", description=__doc__)
    parser.add_argument("command", choices=["check", "schedules"])
    parser.add_argument("file")
    args = parser.parse_args(argv)
    try:
        consortium = load_consortium(args.file)
    except ConsortiumError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.command == "check":
        print(f"{consortium.consortium}: {len(consortium.districts)} district(s), valid")
        return 0
    schedules = [
        {"cron": s["cron"], "timezone": s["timezone"], "parameters": {"schedule_slot": s["slot"]}}
        for s in consortium.schedule_slots()
    ]
    # The clever-consortium deployment's `schedules:` (prefect.yaml), one per district slot.
    print(yaml.safe_dump({"schedules": schedules}, sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
