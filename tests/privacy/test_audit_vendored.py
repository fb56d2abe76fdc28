"""The PII audit leaves out the dashboards' vendored chart library, and nothing else.

A 0.9 MB minified bundle contains short digit runs such as ``1001`` by chance, which is
also a plausible sis_id; the audit must not cry wolf on it, nor be blind to data placed in
a page (or in a script merely claiming to be vendored)."""

from __future__ import annotations

import hashlib

from edulake.privacy.audit import Auditor, without_vendored
from edulake.report.page import BUNDLE_END, vendored_script

LIBRARY = "var a=1001;function f(){return a}" + BUNDLE_END


def _findings(page: str) -> list[str]:
    auditor = Auditor({"1001", "LEAKSIS0001"})
    auditor.scan_bytes("exports/dashboard/clever.html", page.encode())
    return [f.location for f in auditor.report.findings]


def test_the_vendored_library_is_not_a_finding():
    page = f"<html><script>{{}}</script>{vendored_script(LIBRARY)}</html>"
    assert _findings(page) == []
    assert b"1001" not in without_vendored(page.encode())


def test_data_in_the_page_is_still_found():
    page = f'<script type="application/json">["LEAKSIS0001"]</script>{vendored_script(LIBRARY)}'
    assert _findings(page) == ["exports/dashboard/clever.html"]


def test_a_script_that_only_claims_to_be_vendored_is_scanned():
    body = "var leak='1001';" + BUNDLE_END
    wrong = hashlib.sha256(b"something else").hexdigest()
    forged = f'<script data-edulake-vendored="sha256:{wrong}">{body}</script>'
    assert _findings(forged) == ["exports/dashboard/clever.html"]
    # right hash but not the bundle (does not end as the bundle does): scanned too
    code = "var leak='1001';"
    assert _findings(vendored_script(code)) == ["exports/dashboard/clever.html"]
