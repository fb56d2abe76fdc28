"""The IAM policy documents: valid JSON, least privilege as the docs claim."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import pytest

IAM = Path(__file__).parents[2] / "deployments" / "iam"


def policy(name: str) -> dict[str, Any]:
    return json.loads((IAM / f"{name}.json").read_text())


def allowed(doc: dict[str, Any], action: str, resource: str) -> bool:
    """IAM evaluation in small: an explicit deny wins, else any matching allow (no conditions)."""

    def hits(effect: str) -> bool:
        for st in doc["Statement"]:
            if st["Effect"] != effect:
                continue
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            if any(fnmatch.fnmatchcase(action, a) for a in actions) and any(
                fnmatch.fnmatchcase(resource, r) for r in resources
            ):
                return True
        return False

    return not hits("Deny") and hits("Allow")


GLUE = "arn:aws:glue:us-east-1:123456789012"
WG = "arn:aws:athena:us-east-1:123456789012:workgroup/edulake"


@pytest.mark.parametrize("name", ["pipeline-role", "analyst-role", "data-steward-role"])
def test_documents_are_valid_policies(name):
    doc = policy(name)
    assert doc["Version"] == "2012-10-17"
    assert all({"Effect", "Action", "Resource"} <= set(st) for st in doc["Statement"])


def test_pipeline_can_do_what_the_code_does():
    doc = policy("pipeline-role")
    for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload"):
        assert allowed(doc, action, "arn:aws:s3:::edulake-lake/lake/_tmp/x.tmp")
        assert allowed(doc, action, "arn:aws:s3:::edulake-np/np/stage2np/clever/x.parquet")
    for action in ("GetDatabase", "CreateDatabase", "GetTable", "CreateTable", "UpdateTable"):
        assert allowed(doc, f"glue:{action}", f"{GLUE}:table/edulake_clever_np/sis_id_lookup")
    for action in ("StartQueryExecution", "GetQueryExecution", "GetQueryResults"):
        assert allowed(doc, f"athena:{action}", WG)
    assert not allowed(doc, "s3:GetObject", "arn:aws:s3:::some-other-bucket/x")


def test_analyst_reads_stage2p_and_results_never_protected_zones():
    doc = policy("analyst-role")
    assert allowed(doc, "s3:GetObject", "arn:aws:s3:::edulake-lake/lake/stage2p/clever/t/a.parquet")
    assert allowed(doc, "s3:PutObject", "arn:aws:s3:::edulake-athena-results/q.csv")
    assert allowed(doc, "glue:GetTable", f"{GLUE}:table/edulake_clever/daily_participation")
    assert allowed(doc, "athena:StartQueryExecution", WG)
    for denied in (
        "arn:aws:s3:::edulake-np/np/stage2np/clever/sis_id_lookup/lookup.parquet",
        "arn:aws:s3:::edulake-np/np/quarantine/clever/x.csv",
        "arn:aws:s3:::edulake-lake/lake/stage1np/clever/raw.csv",
    ):
        assert not allowed(doc, "s3:GetObject", denied)
    assert not allowed(doc, "glue:GetTable", f"{GLUE}:table/edulake_clever_np/sis_id_lookup")
    assert not allowed(doc, "s3:PutObject", "arn:aws:s3:::edulake-lake/lake/stage2p/x")


def test_steward_reads_stage2np_with_own_results_bucket():
    doc = policy("data-steward-role")
    assert allowed(doc, "s3:GetObject", "arn:aws:s3:::edulake-np/np/stage2np/clever/x.parquet")
    assert allowed(doc, "glue:GetTable", f"{GLUE}:table/edulake_clever_np/sis_id_lookup")
    assert allowed(doc, "athena:StartQueryExecution", f"{WG}-steward")
    assert not allowed(doc, "athena:StartQueryExecution", WG)  # PII results stay apart
    assert not allowed(doc, "s3:PutObject", "arn:aws:s3:::edulake-athena-results/q.csv")
    assert not allowed(doc, "s3:PutObject", "arn:aws:s3:::edulake-np/np/stage2np/x")
