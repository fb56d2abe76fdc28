"""Publishing lake tables to the Glue Data Catalog (moto's stateful Glue)."""

from __future__ import annotations

import pytest

from edulake.catalog import CatalogTable
from edulake.catalog.glue import GlueCatalog
from edulake.core.lake import Lake, S3Options, Zone
from edulake.specs import OutputColumn, TableSpec, load_spec
from tests.aws.conftest import CallCounter

LAKE = Lake(
    "s3://edulake-lake/lake",
    np_root="s3://edulake-np/np",
    s3=S3Options(endpoint_url="http://127.0.0.1:9", access_key_id="k", secret_access_key="s"),
)
KEY_PROPS = {"edulake.key_id": "k-3f2a", "edulake.spec_version": "1"}

MONTHLY = TableSpec.model_validate(
    {
        "name": "reference_desk",
        "source": "libinsight",
        "description": "LibInsight reference desk questions.",
        "partition_by": "start_date",
        "partition_granularity": "month",
        "columns": [
            {"name": "id", "type": "int64", "comment": "LibInsight record id."},
            {"name": "start_date", "type": "timestamp", "comment": "When it happened."},
            {"name": "question_type", "type": "string"},
            {"name": "entered_by", "type": "string", "op": "hash"},
            {"name": "tags", "type": "list<string>"},
        ],
    }
)


def daily_table(**changes: object) -> CatalogTable:
    table = CatalogTable.from_spec(
        LAKE, load_spec("clever", "daily_participation"), KEY_PROPS, version=0
    )
    return CatalogTable(**{**table.__dict__, **changes})  # type: ignore[arg-type]


def lookup_table() -> CatalogTable:
    return CatalogTable(
        zone=Zone.STAGE2NP,
        source="clever",
        name="sis_id_lookup",
        columns=[
            OutputColumn(name="pseudonym", type="string", comment="HMAC pseudonym."),
            OutputColumn(name="value", type="string", comment="Raw SIS id (PII)."),
            OutputColumn(name="first_seen", type="date"),
            OutputColumn(name="last_seen", type="date"),
            OutputColumn(name="key_id", type="string"),
        ],
        location=LAKE.uri(Zone.STAGE2NP, "clever/sis_id_lookup"),
        description="SIS id lookup.",
    )


def test_publish_creates_database_and_typed_external_parquet_table(glue_client):
    catalog = GlueCatalog(glue_client=glue_client)
    result = catalog.publish(daily_table(), partitions=["2024-01-03", "2024-01-02"])
    assert (result.database, result.table, result.action) == (
        "edulake_clever",
        "daily_participation",
        "created",
    )
    assert result.partitions == 2

    assert glue_client.get_database(Name="edulake_clever")["Database"]["Name"] == "edulake_clever"
    table = glue_client.get_table(DatabaseName="edulake_clever", Name="daily_participation")[
        "Table"
    ]
    sd = table["StorageDescriptor"]
    assert [(c["Name"], c["Type"]) for c in sd["Columns"]] == [
        ("sis_id_pseudonym", "string"),
        ("clever_user_id_pseudonym", "string"),
        ("clever_school_id", "string"),
        ("school_name", "string"),
        ("active", "boolean"),
        ("num_logins", "bigint"),
        ("num_resources_accessed", "bigint"),
        ("role", "string"),
    ]
    assert sd["Columns"][5]["Comment"].startswith("Times the user accessed resources")
    assert table["PartitionKeys"] == [{"Name": "date", "Type": "date", "Comment": "Report day."}]
    assert sd["Location"] == "s3://edulake-lake/lake/stage2p/clever/daily_participation/"
    assert sd["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
    assert sd["InputFormat"].endswith("MapredParquetInputFormat")
    assert table["TableType"] == "EXTERNAL_TABLE"
    params = table["Parameters"]
    assert params == {
        "classification": "parquet",
        "EXTERNAL": "TRUE",
        "edulake.key_id": "k-3f2a",
        "edulake.spec_version": "1",
        "projection.enabled": "true",
        "projection.date.type": "date",
        "projection.date.format": "yyyy-MM-dd",
        "projection.date.range": "2024-01-02,NOW",  # starts at the earliest partition
        "projection.date.interval": "1",
        "projection.date.interval.unit": "DAYS",
        "storage.location.template": (
            "s3://edulake-lake/lake/stage2p/clever/daily_participation/date=${date}/"
        ),
    }


def test_month_partitions_are_projected_as_yyyy_mm_dates(glue_client):
    table = CatalogTable.from_spec(LAKE, MONTHLY, version=0)
    GlueCatalog(glue_client=glue_client).publish(table, partitions=["2023-11"])
    got = glue_client.get_table(DatabaseName="edulake_libinsight", Name="reference_desk")["Table"]
    assert got["PartitionKeys"][0]["Name"] == "month"
    assert got["PartitionKeys"][0]["Type"] == "string"
    assert [(c["Name"], c["Type"]) for c in got["StorageDescriptor"]["Columns"]] == [
        ("id", "bigint"),
        ("start_date", "timestamp"),
        ("question_type", "string"),
        ("entered_by_pseudonym", "string"),
        ("tags", "array<string>"),
    ]
    p = got["Parameters"]
    assert p["projection.month.type"] == "date"
    assert p["projection.month.format"] == "yyyy-MM"
    assert p["projection.month.interval.unit"] == "MONTHS"
    assert p["projection.month.range"] == "2023-11,NOW"
    assert p["storage.location.template"].endswith(
        "/stage2p/libinsight/reference_desk/month=${month}/"
    )


def test_lookup_tables_go_to_the_np_database_in_the_np_bucket(glue_client):
    GlueCatalog(glue_client=glue_client).publish(lookup_table())
    got = glue_client.get_table(DatabaseName="edulake_clever_np", Name="sis_id_lookup")["Table"]
    assert (
        got["StorageDescriptor"]["Location"] == "s3://edulake-np/np/stage2np/clever/sis_id_lookup/"
    )
    assert got["PartitionKeys"] == []
    assert not any(k.startswith("projection") for k in got["Parameters"])
    desc = glue_client.get_database(Name="edulake_clever_np")["Database"]["Description"]
    assert "PII" in desc


def test_publishing_twice_makes_no_glue_write(glue_client):
    catalog = GlueCatalog(glue_client=glue_client)
    catalog.publish(daily_table(), partitions=["2024-01-02"])
    catalog.publish(lookup_table())
    versions = glue_client.get_table_versions(
        DatabaseName="edulake_clever", TableName="daily_participation"
    )["TableVersions"]

    counter = CallCounter(glue_client)
    again = catalog.publish(daily_table(), partitions=["2024-01-05"])  # newer day: same range
    again_np = catalog.publish(lookup_table())
    assert again.action == "unchanged"
    assert again_np.action == "unchanged"
    assert again.schema_changes == []
    assert counter.names().count("GetTable") == 2  # it did compare...
    assert [n for n in counter.names() if not n.startswith("Get")] == []  # ...and wrote nothing
    after = glue_client.get_table_versions(
        DatabaseName="edulake_clever", TableName="daily_participation"
    )["TableVersions"]
    assert [v["VersionId"] for v in after] == [v["VersionId"] for v in versions]


def test_schema_change_updates_the_table_and_is_reported(glue_client):
    catalog = GlueCatalog(glue_client=glue_client)
    catalog.publish(daily_table(), partitions=["2024-01-02"])
    base = daily_table()
    columns = [c for c in base.columns if c.name != "school_name"]
    columns = [
        c if c.name != "num_logins" else OutputColumn(name="num_logins", type="float64")
        for c in columns
    ]
    columns.append(OutputColumn(name="grade", type="string", comment="Grade level."))

    counter = CallCounter(glue_client)
    result = catalog.publish(daily_table(columns=columns), partitions=["2024-01-02"])
    assert result.action == "schema-changed"
    assert result.schema_changes == [
        "added column grade string",
        "column num_logins: type bigint -> double",
        "removed column school_name",
    ]
    assert counter.names().count("UpdateTable") == 1
    got = glue_client.get_table(DatabaseName="edulake_clever", Name="daily_participation")["Table"]
    assert "grade" in [c["Name"] for c in got["StorageDescriptor"]["Columns"]]
    versions = glue_client.get_table_versions(
        DatabaseName="edulake_clever", TableName="daily_participation"
    )["TableVersions"]
    assert len(versions) == 2


def test_earlier_partition_widens_the_projection_range(glue_client):
    catalog = GlueCatalog(glue_client=glue_client)
    catalog.publish(daily_table(), partitions=["2024-01-02"])
    result = catalog.publish(daily_table(), partitions=["2023-09-01"])  # a backfill
    assert result.action == "updated"
    assert result.schema_changes == []
    got = glue_client.get_table(DatabaseName="edulake_clever", Name="daily_participation")["Table"]
    assert got["Parameters"]["projection.date.range"] == "2023-09-01,NOW"


def test_property_change_updates_without_schema_change(glue_client):
    catalog = GlueCatalog(glue_client=glue_client)
    catalog.publish(daily_table(), partitions=["2024-01-02"])
    result = catalog.publish(
        daily_table(properties={**KEY_PROPS, "edulake.key_id": "k-new"}), partitions=[]
    )
    assert result.action == "updated"
    got = glue_client.get_table(DatabaseName="edulake_clever", Name="daily_participation")["Table"]
    assert got["Parameters"]["edulake.key_id"] == "k-new"


def test_local_lake_tables_are_refused(glue_client, tmp_path):
    table = CatalogTable.from_spec(Lake(str(tmp_path)), load_spec("clever", "resource_usage"))
    with pytest.raises(ValueError, match="need an s3:// location"):
        GlueCatalog(glue_client=glue_client).publish(table)
