"""HTTP from a benchmark's side: one keep-alive client per workstation, and signing in.

`Http` is a plain HTTP/1.1 client over http.client (gevent-friendly once the process is
patched): JSON in, JSON out, no retries (an error is an error), and every answer says
when its request was sent and how long it took (time.monotonic()), so that a run can
relate a change to what the displays received. `sign_in` asks POST /api/auth/token for
a bearer token, the one way every benchmark signs in.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

IDLE_RECONNECT_SECONDS = 3.0  # gunicorn drops idle keep-alive connections after 5 s


class SignInFailed(RuntimeError):
    """POST /api/auth/token did not hand out a token."""


@dataclass(slots=True)
class Answer:
    status: int  # 0: no answer (connection error)
    data: object  # the JSON body (or the start of a body that is not JSON)
    started: float  # time.monotonic() just before the request was sent
    elapsed: float
    error: str | None = None

    @property
    def done(self) -> float:
        """time.monotonic() when the answer had been read."""
        return self.started + self.elapsed

    def brief(self) -> str:
        if self.error:
            return self.error
        text = json.dumps(self.data)[:300] if self.data is not None else ""
        return f"HTTP {self.status} {text}"


def host_and_port(base_url: str) -> tuple[str, int]:
    """("127.0.0.1", 8000) from "http://127.0.0.1:8000"; ValueError for anything else."""
    parts = urlsplit(base_url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"expected http://host:port, not {base_url!r}")
    return parts.hostname, parts.port or 80


class Http:
    """A keep-alive HTTP/1.1 client for one workstation (no retries: an error is an error)."""

    def __init__(self, host: str, port: int, token: str | None = None, timeout: float = 60.0):
        self.host, self.port, self.token, self.timeout = host, port, token, timeout
        self._conn: http.client.HTTPConnection | None = None
        self._last_used = 0.0

    @classmethod
    def to(cls, base_url: str, token: str | None = None, timeout: float = 60.0) -> Http:
        return cls(*host_and_port(base_url), token=token, timeout=timeout)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: object = None, headers: dict | None = None) -> Answer:
        if self._conn is None or time.monotonic() - self._last_used > IDLE_RECONNECT_SECONDS:
            # Reconnect rather than reuse a connection the server may be closing right now.
            self.close()
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        sent_headers = {"Accept": "application/json", **(headers or {})}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            sent_headers["Content-Type"] = "application/json"
        if self.token:
            sent_headers["Authorization"] = f"Bearer {self.token}"
        started = time.monotonic()
        try:
            self._conn.request(method, path, body=payload, headers=sent_headers)
            response = self._conn.getresponse()
            raw = response.read()
            if response.will_close:
                self.close()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return Answer(0, None, started, time.monotonic() - started, f"{method} {path}: {exc!r}")
        ended = time.monotonic()
        self._last_used = ended
        return Answer(response.status, parse_body(raw), started, ended - started)


def parse_body(raw: bytes) -> object:
    """The JSON of a body; the start of its text if it is not JSON; None if empty."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw[:200].decode(errors="replace")


def sign_in(base_url: str, username: str, password: str) -> tuple[str, dict]:
    """(bearer token, the account) from POST /api/auth/token; SignInFailed otherwise."""
    client = Http.to(base_url)
    try:
        answer = client.request("POST", "/api/auth/token", {"username": username, "password": password})
    finally:
        client.close()
    if answer.status != 200:
        raise SignInFailed(f"sign-in as {username!r} at {base_url} failed: {answer.brief()}")
    return answer.data["access_token"], answer.data["user"]


def get_token(base_url: str, username: str, password: str) -> str:
    """A bearer token for the account (see sign_in)."""
    return sign_in(base_url, username, password)[0]
