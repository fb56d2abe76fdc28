"""OAuth2 client credentials for LibInsight: form fields or HTTP Basic, renewed when needed.

The token is fetched lazily, renewed shortly before ``expires_in`` runs out, and renewed
at once when the server refuses it (a 401 or an expired-token envelope) - but only once
for all the concurrent workers that saw the same refused token.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Mapping
from typing import Literal

from edulake.connectors.http.client import HttpClient, HttpError
from edulake.connectors.http.redaction import SecretScrubber

AuthMode = Literal["form", "basic"]


class ClientCredentials:
    """An :class:`~edulake.connectors.http.client.AuthProvider` for the client-credentials grant."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        mode: AuthMode = "form",
        scrubber: SecretScrubber | None = None,
        skew_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if mode not in ("form", "basic"):
            raise ValueError(f"auth mode must be 'form' or 'basic', not {mode!r}")
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self.mode = mode
        self.scrubber = scrubber or SecretScrubber()
        self.scrubber.add(client_secret, user=client_id)  # every encoding, Basic's too
        self.skew_s = skew_s
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0
        self.http: HttpClient | None = None  # set by the owner (the client it signs)
        self.fetched = 0

    def __repr__(self) -> str:
        return f"ClientCredentials(client_id={self.client_id!r}, mode={self.mode!r})"

    def _fetch(self) -> None:
        if self.http is None:
            raise RuntimeError("ClientCredentials.http is not set")
        data = {"grant_type": "client_credentials"}
        headers: dict[str, str] = {}
        if self.mode == "form":
            data |= {"client_id": self.client_id, "client_secret": self._secret}
        else:
            pair = f"{self.client_id}:{self._secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        try:
            resp = self.http.request(
                "POST", self.token_url, data=data, headers=headers, use_auth=False
            )
            body = resp.json()
        except HttpError as exc:
            raise HttpError(
                f"LibInsight refused the client credentials ({self.mode} auth, client id "
                f"{self.client_id!r}): {exc}",
                status=exc.status,
                url=exc.url,
            ) from None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not token:
            raise HttpError("LibInsight's token response has no access_token", url=self.token_url)
        self.scrubber.add(str(token))
        try:
            ttl = float(body.get("expires_in") or 3600)
        except (TypeError, ValueError):
            ttl = 3600.0
        self._token = str(token)
        # Renew a little early, but never so early that a short-lived token is never used.
        self._expires = self._clock() + ttl - min(self.skew_s, ttl * 0.1)
        self.fetched += 1

    def headers(self) -> dict[str, str]:
        with self._lock:
            if self._token is None or self._clock() >= self._expires:
                self._fetch()
            return {"Authorization": f"Bearer {self._token}"}

    def refresh(self, rejected: Mapping[str, str]) -> bool:
        with self._lock:
            # Several workers may report the same refused token: renew it once.
            if rejected.get("Authorization") == f"Bearer {self._token}":
                self._token = None
                self._fetch()
                return True
            return False
