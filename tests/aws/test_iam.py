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


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def allowed(
    doc: dict[str, Any],
    action: str,
    resource: str,
    *,
    userid: str = "AROAEXAMPLE:alice",
    prefix: str | None = None,
) -> bool:
    """IAM evaluation in small: an explicit deny wins, else any matching allow.

    ``${aws:userid}`` in a resource or condition is the caller's ``userid``; the one
    condition the policies use, ``StringLike s3:prefix``, is evaluated against ``prefix``
    (a ListBucket request without a prefix does not match it)."""

    def sub(pattern: str) -> str:
        return pattern.replace("${aws:userid}", userid)

    def conditions_hold(st: dict[str, Any]) -> bool:
        for op, tests in st.get("Condition", {}).items():
            assert op == "StringLike" and set(tests) == {"s3:prefix"}, "unmodelled condition"
            patterns = [sub(p) for p in _list(tests["s3:prefix"])]
            if prefix is None or not any(fnmatch.fnmatchcase(prefix, p) for p in patterns):
                return False
        return True

    def hits(effect: str) -> bool:
        for st in doc["Statement"]:
            if st["Effect"] != effect:
                continue
            matches = any(fnmatch.fnmatchcase(action, a) for a in _list(st["Action"])) and any(
                fnmatch.fnmatchcase(resource, sub(r)) for r in _list(st["Resource"])
            )
            if matches and conditions_hold(st):
                return True
        return False

    return not hits("Deny") and hits("Allow")


POLICIES = sorted(p.stem for p in IAM.glob("*.json"))


@pytest.mark.parametrize("name", POLICIES)
def test_parliament_finds_nothing(name):
    """Every policy passes parliament's checks (community auditors included); it flagged an
    ``s3:prefix`` condition on GetBucketLocation, which can never match."""
    from parliament import analyze_policy_string

    found = analyze_policy_string(
        (IAM / f"{name}.json").read_text(), include_community_auditors=True
    ).findings
    assert [(f.issue, f.detail) for f in found] == []


@pytest.mark.parametrize("name", POLICIES)
def test_prefix_conditions_only_on_listing(name):
    for st in policy(name)["Statement"]:
        if "s3:prefix" in str(st.get("Condition", {})):
            assert set(_list(st["Action"])) <= {"s3:ListBucket", "s3:ListBucketVersions"}


GLUE = "arn:aws:glue:us-east-1:123456789012"
WG = "arn:aws:athena:us-east-1:123456789012:workgroup/edulake"
ANALYSTS_WG = f"{WG}-analysts"
RESULTS = "arn:aws:s3:::edulake-athena-results"
EXTRACT = f"{RESULTS}/edulake/2b1f0c4e-query-id.csv"  # the pipeline's Tableau extract


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
    for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject"):
        assert allowed(doc, action, EXTRACT)  # its own results and the extract
    assert allowed(doc, "s3:GetBucketLocation", RESULTS)
    assert allowed(doc, "s3:ListBucket", RESULTS, prefix="edulake/unload/x/")
    # analysts' results are theirs alone
    assert not allowed(doc, "s3:GetObject", f"{RESULTS}/analysts/AROAEXAMPLE:alice/q.csv")


def test_pipeline_never_deletes_the_legal_record():
    """stage1np is what was received; no code path deletes it, so the role cannot either."""
    doc = policy("pipeline-role")
    raw = "arn:aws:s3:::edulake-np/np/stage1np/clever/daily-participation/x.csv"
    assert allowed(doc, "s3:PutObject", raw) and allowed(doc, "s3:GetObject", raw)
    # where an older edulake kept them too (edulake move-raw is run by an administrator)
    legacy = "arn:aws:s3:::edulake-lake/lake/stage1np/clever/daily-participation/x.csv"
    for action in ("s3:DeleteObject", "s3:DeleteObjectVersion"):
        assert not allowed(doc, action, raw) and not allowed(doc, action, legacy)
    deny = [s for s in doc["Statement"] if s["Effect"] == "Deny"]
    assert any("s3:DeleteObject" in _list(s["Action"]) for s in deny)  # explicit, not absent
    assert allowed(doc, "s3:DeleteObject", "arn:aws:s3:::edulake-lake/lake/_tmp/x.tmp")


def test_analyst_reads_stage2p_and_results_never_protected_zones():
    doc = policy("analyst-role")
    assert allowed(doc, "s3:GetObject", "arn:aws:s3:::edulake-lake/lake/stage2p/clever/t/a.parquet")
    assert allowed(doc, "glue:GetTable", f"{GLUE}:table/edulake_clever/daily_participation")
    assert allowed(doc, "athena:StartQueryExecution", ANALYSTS_WG)
    for denied in (
        "arn:aws:s3:::edulake-np/np/stage2np/clever/sis_id_lookup/lookup.parquet",
        "arn:aws:s3:::edulake-np/np/quarantine/clever/x.csv",
        "arn:aws:s3:::edulake-lake/lake/stage1np/clever/raw.csv",
        "arn:aws:s3:::edulake-np/np/stage1np/clever/raw.csv",
    ):
        assert not allowed(doc, "s3:GetObject", denied)
    assert not allowed(doc, "glue:GetTable", f"{GLUE}:table/edulake_clever_np/sis_id_lookup")
    assert not allowed(doc, "s3:PutObject", "arn:aws:s3:::edulake-lake/lake/stage2p/x")


def test_analysts_have_their_own_workgroup_and_results():
    doc = policy("analyst-role")
    mine = f"{RESULTS}/analysts/AROAEXAMPLE:alice/q.csv"
    theirs = f"{RESULTS}/analysts/AROAEXAMPLE:bob/q.csv"
    for action in ("s3:PutObject", "s3:GetObject"):
        assert allowed(doc, action, mine)
        assert not allowed(doc, action, theirs)  # one analyst never reads another's results
    assert allowed(doc, "s3:ListBucket", RESULTS, prefix="analysts/AROAEXAMPLE:alice/")
    assert not allowed(doc, "s3:ListBucket", RESULTS, prefix="analysts/AROAEXAMPLE:bob/")
    assert not allowed(doc, "s3:ListBucket", RESULTS)  # no listing the whole bucket
    assert allowed(doc, "s3:GetBucketLocation", RESULTS)  # unconditional: SDKs call it
    # the pipeline's workgroup and extract: read-only
    for action in ("athena:StartQueryExecution", "athena:GetQueryResults"):
        assert not allowed(doc, action, WG)
    assert allowed(doc, "s3:GetObject", EXTRACT)
    for action in ("s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion"):
        assert not allowed(doc, action, EXTRACT)


def test_steward_reads_stage2np_with_own_results_bucket():
    doc = policy("data-steward-role")
    assert allowed(doc, "s3:GetObject", "arn:aws:s3:::edulake-np/np/stage2np/clever/x.parquet")
    assert allowed(doc, "glue:GetTable", f"{GLUE}:table/edulake_clever_np/sis_id_lookup")
    assert allowed(doc, "athena:StartQueryExecution", f"{WG}-steward")
    assert not allowed(doc, "athena:StartQueryExecution", WG)  # PII results stay apart
    assert not allowed(doc, "s3:PutObject", "arn:aws:s3:::edulake-athena-results/q.csv")
    assert not allowed(doc, "s3:PutObject", "arn:aws:s3:::edulake-np/np/stage2np/x")
