"""The client and paging over real HTTP on 127.0.0.1 against the local LibInsight server."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from edulake.connectors.http.client import HttpError, TransientHttpError
from edulake.connectors.http.redaction import redact_headers, redact_params, redact_url
from edulake.sources.libinsight.api import LibInsightError
from edulake.sources.libinsight.windows import Window, split_windows
from tests.servers.libinsight import libinsight_server

pytestmark = pytest.mark.slow  # a real HTTP server on 127.0.0.1

D = dt.date


def _fetch_all(client, windows, **kw):
    out = {}
    for w in windows:
        pages, stats = client.data_grid(12345, w, **kw)
        out[str(w)] = (pages, stats)
    return out


def test_multi_window_range_fetches_every_page_exactly_once(server, make_client):
    windows = split_windows(D(2021, 3, 1), D(2023, 8, 31))
    assert len(windows) == 3
    client = make_client(server)
    got = _fetch_all(client, windows, concurrency=6)
    served = server.served_pages()
    expected = set()
    for w in windows:
        records = server.records(w.start, w.end)
        n_pages = -(-len(records) // 100)
        expected |= {(w.start.isoformat(), w.end.isoformat(), p) for p in range(1, n_pages + 1)}
        pages, _stats = got[str(w)]
        assert [p.number for p in pages] == list(range(1, n_pages + 1))
        assert [r["_id"] for p in pages for r in p.records] == [r["_id"] for r in records]
    assert set(served) == expected
    assert set(served.values()) == {1}  # each page answered once, none twice
    assert len(expected) > 30


def test_token_expiry_mid_run_is_recovered(make_client):
    with libinsight_server(token_max_uses=3) as srv:
        client = make_client(srv)
        _pages, stats = client.data_grid(
            12345, Window(D(2022, 1, 1), D(2022, 12, 31)), concurrency=4
        )
        assert stats.pages == len(srv.served_pages()) > 10
        assert srv.count("data", 401) > 0  # the server did refuse expired tokens
        assert client.auth.fetched > 3  # and new tokens were fetched


def test_expired_token_as_error_envelope_with_200_is_recovered(make_client):
    with libinsight_server(token_max_uses=2, expired_style="envelope") as srv:
        client = make_client(srv, auth_mode="basic")
        _, stats = client.data_grid(12345, Window(D(2022, 1, 1), D(2022, 6, 30)), concurrency=2)
        assert stats.pages == len(srv.served_pages()) > 4
        assert client.auth.fetched > 1


def test_token_forgotten_by_the_server_is_renewed_once(server, make_client):
    client = make_client(server)
    client.data_grid(12345, Window(D(2022, 1, 1), D(2022, 1, 31)))
    server.tokens.clear()  # a server restart forgets tokens: a 401 follows, then a new token
    client.data_grid(12345, Window(D(2022, 2, 1), D(2022, 2, 28)))
    assert client.auth.fetched == 2
    assert server.count("data", 401) == 1


def test_429_with_retry_after_is_honoured_as_seen_by_the_server(make_client):
    with libinsight_server(burst_429=3, retry_after_s=1) as srv:
        client = make_client(srv)
        _, stats = client.data_grid(12345, Window(D(2022, 1, 1), D(2022, 4, 30)), concurrency=4)
        assert srv.count("data", 429) == 3
        assert stats.pages == len(srv.served_pages())
        assert srv.throttle_waits, "the throttled pages were requested again"
        for wait in srv.throttle_waits:
            # measured by the server between its 429 and the next request for that page
            assert wait["waited"] >= wait["retry_after"] - 0.01, wait


def test_500_bursts_are_retried(make_client):
    with libinsight_server(burst_500=4) as srv:
        client = make_client(srv)
        _, stats = client.data_grid(12345, Window(D(2022, 1, 1), D(2022, 6, 30)), concurrency=3)
        assert srv.count("data", 500) == 4
        assert stats.pages == len(srv.served_pages())
        assert set(srv.served_pages().values()) == {1}
        assert client.http.stats["retries"] == 4


def test_500_forever_fails_as_transient_after_the_attempts(make_client):
    with libinsight_server(burst_500=100) as srv:
        client = make_client(srv)
        with pytest.raises(TransientHttpError, match="after 6 attempts: HTTP 500"):
            client.data_grid(12345, Window(D(2022, 1, 1), D(2022, 1, 31)))


def test_permanent_4xx_fails_at_once_with_the_server_message(server, make_client):
    client = make_client(server)
    with pytest.raises(HttpError, match="HTTP 404: Dataset 999 not found") as exc:
        client.data_grid(999, Window(D(2022, 1, 1), D(2022, 1, 31)))
    assert not isinstance(exc.value, TransientHttpError)
    assert server.count("data") == 1  # no retry of a permanent error


def test_bad_client_secret_fails_clearly_without_echoing_it(server, make_client):
    from edulake.sources.libinsight.api import LibInsightClient

    client = LibInsightClient(server.base_url, "edulake-demo-client", "wrong-secret-123456")
    try:
        with pytest.raises(HttpError, match="refused the client credentials") as exc:
            client.data_grid(12345, Window(D(2022, 1, 1), D(2022, 1, 31)))
        assert "wrong-secret-123456" not in str(exc.value)
        assert "Client authentication failed" in str(exc.value)
    finally:
        client.close()


def test_type_error_with_http_200_is_caught(make_client):
    with libinsight_server(error_200=1) as srv:
        client = make_client(srv)
        with pytest.raises(LibInsightError, match="Report could not be generated"):
            client.data_grid(12345, Window(D(2022, 1, 1), D(2022, 1, 31)))


def test_range_over_a_year_is_refused_by_the_server_so_windows_matter(server, make_client):
    client = make_client(server)
    with pytest.raises(LibInsightError, match="cannot exceed one year"):
        client.data_grid(12345, Window(D(2021, 1, 1), D(2022, 6, 30)))


@pytest.mark.parametrize("empty_total", [0, 1])
def test_empty_range_with_total_pages_zero_or_one(make_client, empty_total):
    with libinsight_server(empty_total_pages=empty_total, data_from=D(2024, 1, 1)) as srv:
        client = make_client(srv)
        pages, stats = client.data_grid(12345, Window(D(2022, 1, 1), D(2022, 12, 31)))
        assert stats.records == 0
        assert [p.number for p in pages] == [1]
        assert srv.count("data") == 1
        assert stats.empty_pages == []  # an empty range is not an "empty page" warning


def test_rps_cap_and_concurrency_one_still_fetch_everything(server, make_client):
    client = make_client(server)
    _, stats = client.data_grid(
        12345, Window(D(2022, 1, 1), D(2022, 3, 31)), concurrency=1, rps=200
    )
    assert stats.page_numbers == list(range(1, stats.pages + 1))


def test_no_secret_or_token_in_any_log_line(caplog, make_client):
    caplog.set_level(logging.DEBUG)
    with libinsight_server(token_max_uses=2, burst_429=1, burst_500=1, retry_after_s=0) as srv:
        client = make_client(srv)
        client.data_grid(12345, Window(D(2022, 1, 1), D(2022, 3, 31)), concurrency=3)
        with pytest.raises(LibInsightError):
            srv.settings.error_200 = 1
            client.data_grid(12345, Window(D(2022, 4, 1), D(2022, 4, 30)))
        secrets = [srv.settings.client_secret, *srv.issued_tokens]
    assert len(secrets) > 2
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "data-grid" in text  # something was logged
    for s in secrets:
        assert s not in text


def test_redaction_helpers():
    url = "https://u:p@x.libinsight.com/v1.0/a?from=2022-01-01&access_token=abc&client_secret=s"
    shown = redact_url(url)
    assert "abc" not in shown and "u:p" not in shown and "=s" not in shown
    assert "from=2022-01-01" in shown
    assert redact_headers({"Authorization": "Bearer tok", "Accept": "x"}) == {
        "Authorization": "Bearer ***",
        "Accept": "x",
    }
    assert redact_params({"client_secret": "s", "page": 2}) == {"client_secret": "***", "page": 2}
