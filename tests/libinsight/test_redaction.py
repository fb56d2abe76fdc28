"""Encoded secrets are scrubbed: a server or proxy that echoes the request echoes them.

The attack: with HTTP Basic the header carries base64(client_id:secret), with form auth
the body carries the url-encoded secret. A server that echoes the request in its error
body put those encodings into error messages, logs and Prefect's database, because only
the literal secret was scrubbed."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import re
from urllib.parse import quote, quote_plus

import pytest

from edulake.connectors.http.client import HttpError
from edulake.connectors.http.redaction import MASK, SecretScrubber
from edulake.demo.libinsight_server import DEMO_CLIENT_ID
from edulake.sources.libinsight.api import LibInsightClient
from edulake.sources.libinsight.windows import Window
from tests.logs import all_log_lines
from tests.servers.libinsight import libinsight_server

from .conftest import FAST

# Characters that every encoding changes: / + = & space " and a non-ASCII letter.
SECRET = 'Zx9/q+r=T&u"v \u00fc~s3cret-42'
D = dt.date


def forms(secret: str = SECRET, user: str = DEMO_CLIENT_ID) -> dict[str, str]:
    """Each form the secret takes in a request, written out independently of the code."""
    pair = f"{user}:{secret}".encode()
    return {
        "literal": secret,
        "quote": quote(secret, safe=""),
        "quote (default safe)": quote(secret),
        "quote lower-case hex": re.sub(
            r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(secret, safe="")
        ),
        "quote_plus": quote_plus(secret),
        "base64 id:secret": base64.b64encode(pair).decode(),
        "base64url id:secret": base64.urlsafe_b64encode(pair).decode(),
        "base64 secret": base64.b64encode(secret.encode()).decode(),
        "json escaped": json.dumps(secret)[1:-1],
        "json escaped (utf-8)": json.dumps(secret, ensure_ascii=False)[1:-1],
    }


def leaked(text: str) -> list[str]:
    return [name for name, form in forms().items() if form in text]


def test_every_form_is_scrubbed_and_only_the_secret():
    from edulake.connectors.http.redaction import encoded_forms

    scrubber = SecretScrubber()
    scrubber.add(SECRET, user=DEMO_CLIENT_ID)
    for name, form in forms().items():
        text = f"the server said: <{form}> and more"
        assert scrubber.scrub(text) == f"the server said: <{MASK}> and more", name
    assert scrubber.scrub("nothing secret, Zx9 and s3cret alone") == (
        "nothing secret, Zx9 and s3cret alone"
    )
    assert set(forms().values()) - {forms()["quote lower-case hex"]} <= {
        f.removesuffix("\x00pad") + pad
        for f in encoded_forms(SECRET, DEMO_CLIENT_ID)
        for pad in ("", "=", "==")
    }


def test_the_literal_only_scrubber_of_before_would_have_leaked():
    """The attack, stated: what scrubbing only the literal leaves in an echoed request."""
    basic = "Authorization: Basic " + forms()["base64 id:secret"]
    body = "client_secret=" + forms()["quote_plus"]
    assert SECRET not in basic and SECRET not in body  # the literal is not there at all
    scrubber = SecretScrubber()
    scrubber.add(SECRET, user=DEMO_CLIENT_ID)  # as ClientCredentials registers it
    assert not leaked(scrubber.scrub(basic + body))  # now every form is masked


@pytest.mark.parametrize("mode", ["form", "basic"])
def test_an_echoing_server_leaks_no_form_into_errors_or_logs(mode, caplog):
    caplog.set_level(logging.DEBUG)
    # The server expects another secret: it refuses ours and echoes the request it got.
    with libinsight_server(echo=True, client_secret="the-server-expects-another") as srv:
        client = LibInsightClient(srv.base_url, DEMO_CLIENT_ID, SECRET, auth_mode=mode, retry=FAST)
        try:
            with all_log_lines() as logs, pytest.raises(HttpError) as info:
                client.data_grid(12345, Window(D(2022, 1, 1), D(2022, 1, 31)))
        finally:
            client.close()
    message = str(info.value)
    assert "request was: POST /v1.0/oauth/token" in message  # the echo reached the error
    assert MASK in message.split("request was:", 1)[1]  # ... with the secret masked in it
    assert leaked(message) == []
    assert leaked("\n".join(logs.lines)) == []
    assert leaked("\n".join(r.getMessage() for r in caplog.records)) == []


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("mode", ["form", "basic"])
def test_the_flow_against_an_echoing_server_stores_no_form(mode, tmp_path, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    from flows.libinsight_dataset import libinsight_dataset

    monkeypatch.setenv("EDULAKE_LIBINSIGHT_CLIENT_SECRET", SECRET)
    server = libinsight_server(echo=True, client_secret="the-server-expects-another")
    with server as srv, all_log_lines() as logs:
        state = libinsight_dataset(
            base_url=srv.base_url,
            dataset_id=12345,
            client_id=DEMO_CLIENT_ID,
            client_secret_block=None,
            auth_mode=mode,
            lake_root=str(tmp_path / "lake"),
            demo=True,
            from_date=D(2023, 1, 1),
            to_date=D(2023, 1, 31),
            return_state=True,
        )
    assert state.is_failed()
    error = str(state.result(raise_on_failure=False))
    assert "request was:" in error and leaked(error) == []
    assert leaked("\n".join(logs.lines)) == []

    async def stored() -> list[str]:
        async with get_client() as client:
            run_id = state.state_details.flow_run_id
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
            )
            api_logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
            )
            artifacts = await client.read_artifacts()
            states = await client.read_flow_run_states(run_id)
            texts = [r.model_dump_json() for r in runs] + [s.model_dump_json() for s in states]
            texts += [lg.message for lg in api_logs]
            texts += [json.dumps(a.data, default=str) for a in artifacts]
            return texts

    texts = asyncio.run(stored())
    assert any("request was:" in t for t in texts)  # the error did reach Prefect's database
    assert leaked("\n".join(texts)) == []
