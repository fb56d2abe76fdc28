"""All settings in one typed place, read from the environment (prefix ``EDULAKE_``).

Nested settings use ``__``: ``EDULAKE_LAKE__ROOT=s3://bucket/lake``.
Flow parameters override these per run; secrets are never flow parameters.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from edulake.core.errors import DeterministicError
from edulake.core.lake import S3Options

CatalogKind = Literal["duckdb", "glue"]
"""Where tables are published: the embedded DuckDB file (default) or Glue + Athena."""
SourceKind = Literal["testdata", "folder", "sftp"]
"""Where Clever reports come from: the bundled generator, a folder, or Clever's SFTP."""
CATALOG_KINDS: tuple[str, ...] = get_args(CatalogKind)
SOURCE_KINDS: tuple[str, ...] = get_args(SourceKind)


class LakeSettings(BaseModel):
    """Where the zones live."""

    root: str = Field("./lake", description="Lake root: a local folder or s3://bucket/prefix.")
    np_root: str | None = Field(
        None,
        description=(
            "Root for the protected zones (stage2np, quarantine) and the protected catalog "
            "files; defaults to the sibling <root>-protected for a local root (./lake -> "
            "./lake-protected), to root itself (with a warning) for an s3:// root."
        ),
    )


PROTECTED_SUFFIX = "-protected"


def default_np_root(root: str) -> str | None:
    """The protected root when none is configured: ``<root>-protected`` beside a local root
    (so analysts given the lake folder never get the lookups, quarantine or ``*_np``
    catalogs), None (= the same root) for an S3 root, where access is separated by prefix
    in IAM and a run warns about it."""
    if "://" in root and not root.startswith("file://"):
        return None
    trimmed = root.rstrip("/\\") or root
    return trimmed + PROTECTED_SUFFIX


def resolve_np_root(root: str, np_root: str | None) -> str | None:
    """The protected root to use: the one configured, else :func:`default_np_root`.

    None means one root for both sides: an S3 root without an np root, or an np root set
    to the root itself (the explicit, not recommended, one-root layout)."""
    protected = np_root or default_np_root(root)
    if protected is not None and protected.rstrip("/") == root.rstrip("/"):
        return None
    return protected


class S3Settings(BaseModel):
    """How to reach S3 when no prefect-aws AwsCredentials block is given."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None

    def options(self) -> S3Options | None:
        """S3 options when an endpoint or keys are set; None means the AWS default chain."""
        if not (self.endpoint_url or self.access_key_id or self.region):
            return None
        secret = self.secret_access_key
        return S3Options(
            endpoint_url=self.endpoint_url,
            region=self.region,
            access_key_id=self.access_key_id,
            secret_access_key=secret.get_secret_value() if secret else None,
        )


class CatalogSettings(BaseModel):
    """Which SQL catalog tables are published to."""

    kind: CatalogKind = Field("duckdb", description="duckdb (embedded, default) or glue (Athena).")
    duckdb_path: str | None = Field(
        None, description="DuckDB database file; defaults to <lake root>/catalog/edulake.duckdb."
    )
    glue_database_prefix: str = "edulake"
    athena_workgroup: str = "primary"
    athena_output_location: str | None = None


class LeaseSettings(BaseModel):
    """The lake lease: one writer at a time (see edulake/core/lease.py)."""

    wait_s: float = Field(
        1800.0, description="How long a run waits for another run's lease before failing."
    )
    ttl_s: float = Field(
        120.0, description="S3 lease lifetime without renewal: a killed holder's expires after it."
    )
    poll_s: float = Field(1.0, description="How often a waiting run checks the lease.")
    prefect_limit: str | None = Field(
        "edulake-lake",
        description="Prefect global concurrency limit shared by writing runs ('' to not use one).",
    )


class VersionSettings(BaseModel):
    """Table versions of full rewrites (see edulake/core/versions.py)."""

    grace_s: float = Field(
        86400.0,
        ge=0,
        description="Seconds a table version replaced by a key rotation is kept for readers "
        "that started before the switch (Athena queries in flight); erasure deletes them at once.",
    )


class ProcessingSettings(BaseModel):
    """How a run processes landed files: parallelism and batch size (memory against speed)."""

    workers: int = Field(
        2,
        ge=1,
        le=32,
        description="Files processed at once. Each holds about one read block of rows "
        "in memory; 1 uses least memory, more is faster on more cores.",
    )
    block_mb: int = Field(
        4,
        ge=1,
        le=64,
        description="CSV read block in MiB (about 50,000 Clever rows at 4): the batch a "
        "worker holds. Smaller uses less memory and makes smaller Parquet row groups.",
    )


class PublishSettings(BaseModel):
    """The published layer (dashboard views): small-cell suppression."""

    min_cell: int = Field(
        10,
        ge=1,
        description="Counts of distinct people below this (and above 0) are suppressed in "
        "every published view, with complementary suppression (edulake/privacy/suppression.py).",
    )


class Settings(BaseSettings):
    """edulake's settings."""

    model_config = SettingsConfigDict(
        env_prefix="EDULAKE_", env_nested_delimiter="__", extra="ignore"
    )

    lake: LakeSettings = LakeSettings()
    s3: S3Settings = S3Settings()
    catalog: CatalogSettings = CatalogSettings()
    lease: LeaseSettings = LeaseSettings()
    publish: PublishSettings = PublishSettings()
    processing: ProcessingSettings = ProcessingSettings()
    arrow_allocator: Literal["jemalloc", "jemalloc-purge", "arrow-default"] = Field(
        "jemalloc",
        description="Arrow's allocator, set when edulake loads (edulake/core/memory.py): "
        "jemalloc (fast, freed memory returned after 10 s), jemalloc-purge (returned at "
        "once: least memory, more CPU), arrow-default (Arrow's own, mimalloc).",
    )
    versions: VersionSettings = VersionSettings()
    hmac_key: SecretStr | None = Field(
        None, description="Pseudonymization key (prefer a Prefect Secret block in production)."
    )
    max_quarantine_share: float = Field(
        0.01, description="A file fails when more than this share of its rows is quarantined."
    )
    fail_report_age_days: int = Field(
        7,
        description="A Clever run fails when its newest report on the server is older (days).",
    )
    max_quarantine_rows_floor: int = Field(
        10,
        description="A file of fewer than 1,000 rows may have up to this many quarantined "
        "rows (fewer than half of its rows) whatever max_quarantine_share says.",
    )


class ConfigError(DeterministicError, ValueError):
    """A setting or parameter no run can work with: fixed by the operator, never retried."""


_SECRET_WORDS = ("KEY", "SECRET", "TOKEN", "PASSWORD")


def _env_name(loc: tuple[int | str, ...]) -> str:
    return "EDULAKE_" + "__".join(str(p).upper() for p in loc)


def explain_settings_error(exc: ValidationError) -> ConfigError:
    """A pydantic error as one line per bad variable, naming it (values of secrets never shown)."""
    parts = []
    for err in exc.errors():
        name = _env_name(tuple(err.get("loc", ())))
        value = err.get("input")
        shown = (
            f"={value!r}"
            if isinstance(value, str | int | float)
            and not any(w in name for w in _SECRET_WORDS)
            and len(str(value)) <= 80
            else ""
        )
        parts.append(f"{name}{shown}: {err.get('msg', 'invalid')}")
    return ConfigError("invalid edulake setting: " + "; ".join(parts))


def _sections() -> dict[str, type[BaseModel]]:
    """The nested sections of the settings: ``{"CATALOG": CatalogSettings, ...}``."""
    sections: dict[str, type[BaseModel]] = {}
    for name, info in Settings.model_fields.items():
        model = info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            sections[name.upper()] = model
    return sections


def unknown_setting_names(environ: dict[str, str]) -> list[str]:
    """``EDULAKE_<SECTION>__<FIELD>`` variables whose field does not exist (typos).

    pydantic ignores them, so ``EDULAKE_CATALOG__KNID=glue`` would silently publish to
    DuckDB. Only the nested sections are checked: other ``EDULAKE_*`` names belong to
    other readers (LibInsight settings, crash points, deployment variables).
    """
    sections = _sections()
    unknown = []
    for var in sorted(environ):
        head, sep, field = var.removeprefix("EDULAKE_").partition("__")
        if not var.startswith("EDULAKE_") or not sep or head not in sections:
            continue
        if field.split("__")[0].lower() not in sections[head].model_fields:
            unknown.append(var)
    return unknown


def check_setting_names(environ: dict[str, str]) -> None:
    """Refuse misspelt nested setting names (names only: their values are never shown)."""
    unknown = unknown_setting_names(environ)
    if unknown:
        sections = sorted({v.removeprefix("EDULAKE_").split("__")[0] for v in unknown})
        models = _sections()
        known = "; ".join(
            ", ".join(f"EDULAKE_{section}__{f.upper()}" for f in models[section].model_fields)
            for section in sections
        )
        raise ConfigError(
            f"unknown edulake setting(s) {', '.join(unknown)} (a typo?); known: {known}"
        )


def get_settings() -> Settings:
    """Settings as the environment says now (read afresh: tests change the environment).

    A bad value raises :class:`ConfigError`, one line naming the variable.
    """
    try:
        return Settings()
    except ValidationError as exc:
        raise explain_settings_error(exc) from None
    except SettingsError as exc:  # a nested setting given as a value that is not JSON
        field = re.search(r'field "([^"]+)"', str(exc))
        name = _env_name((field.group(1),)) if field else "an EDULAKE_* variable"
        raise ConfigError(
            f"invalid edulake setting: {name} does not parse (a nested setting takes JSON, "
            f"or set its fields one by one: {name}__<FIELD>)"
        ) from None
