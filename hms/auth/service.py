"""Accounts: password checks, bearer tokens, and the cached identity of a caller.

A token is signed (itsdangerous) and carries the user id and the account's token
epoch. Changing the password or disabling the account bumps the epoch, so every token
and session issued before stops working at the next request. The identity behind a
token is read through the cache (invalidated after each account change), so checking
a token costs no database query on the hot path. With IDENTITY_LOCAL_SECONDS > 0 (default
0) each worker process also keeps what it read that long, so a busy caller costs no cache
round trip either; the worker that commits an account change forgets the account at
once, the other workers and instances see the change only within that time.
If the cache cannot be reached when an account changes, the identity's deletion is kept
and delivered when it answers again, and until then this worker reads that account from
the database (hms.core.cache): a disabled or demoted account does not come back with Redis.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from functools import lru_cache

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import delete, select
from werkzeug.security import check_password_hash, generate_password_hash

from hms.auth.models import EndedSession, User
from hms.auth.throttle import Refused, sign_in_throttle
from hms.core.cache import cache_delete, cache_get, cache_set, cached, prefetch
from hms.core.db import end_read_transaction
from hms.core.lru import BoundedCache
from hms.core.metrics import rate_limited
from hms.core.offload import off_loop
from hms.core.settings import app_memo, setting
from hms.core.time import utcnow
from hms.core.uow import unit_of_work
from hms.errors import TooManyRequests, Unauthorized
from hms.extensions import db

IDENTITY_CACHE_SECONDS = 60
_LOCAL_MAX_ACCOUNTS = 10_000
BAD_LOGIN = "Invalid username or password."
TOO_MANY_SIGN_INS = "Too many sign-in attempts: try again in {window}"  # "a minute", "an hour"


@lru_cache(maxsize=4)
def dummy_hash(method: str) -> str:
    """Checked against when the username is unknown, so both failures cost one check of
    the configured method (accounts are hashed with it): the time names no account.
    Made once per method; create_app makes it at start-up."""
    return generate_password_hash("not-a-password", method=method)


@dataclass(frozen=True)
class Identity:
    """Who is calling: what every permission check and audit field needs."""

    id: int
    username: str
    name: str
    role: str
    active: bool
    token_epoch: int

    def public(self) -> dict:
        return {"id": self.id, "username": self.username, "name": self.name, "role": self.role}


def hash_password(password: str) -> str:
    return _hashing(generate_password_hash, password, setting("PASSWORD_HASH_METHOD"))


def _hashing(function, *args):
    """A password hash or check, off the gevent loop (hms.core.offload). The request's
    read transaction, if one is open, ends first: on SQLite every transaction holds the
    write lock (BEGIN IMMEDIATE), and a greenlet that waits for it blocks the whole loop,
    this one's return included."""
    end_read_transaction()
    return off_loop(function, *args)


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(setting("SECRET_KEY"), salt="hms-access-token")


def _identity_key(user_id: int) -> str:
    return f"identity:{user_id}"


# This process's recently read identities: user id -> (read at, Identity | None).
local_identities: BoundedCache[int, tuple[float, Identity | None]] = BoundedCache(_LOCAL_MAX_ACCOUNTS)


def load_identity(user_id: int) -> Identity | None:
    max_age = setting("IDENTITY_LOCAL_SECONDS")
    if max_age > 0:
        entry = local_identities.get(user_id)
        if entry is not None and time.monotonic() - entry[0] < max_age:
            return entry[1]
    identity = _load_shared_identity(user_id)
    if max_age > 0:
        local_identities.set(user_id, (time.monotonic(), identity))
    return identity


def _load_shared_identity(user_id: int) -> Identity | None:
    def load() -> dict | None:
        user = db.session.get(User, user_id)
        if user is None:
            return None
        return asdict(Identity(user.id, user.username, user.name, user.role, user.active, user.token_epoch))

    data = cached(_identity_key(user_id), IDENTITY_CACHE_SECONDS, load, name="identity")
    return Identity(**data) if data else None


def forget_identity(user_id: int) -> None:
    """Call after committing any change to an account."""
    local_identities.pop(user_id)
    cache_delete(_identity_key(user_id))


def sign_in(username: str, password: str, client: str) -> Identity:
    """Check a password for the API and the login form alike, within the sign-in limits.

    Counted per (username, client address) tightly, per client address across usernames,
    and per username across all clients with a much higher ceiling: a stranger's guesses
    from another address do not lock the user out, and a guesser spread over many
    addresses is still bounded. Successful sign-ins are counted per client address too
    (LOGIN_SUCCESS_LIMIT_PER_CLIENT): each costs a password check, so a client signing in
    in a loop cannot keep the workers hashing. The slots are reserved before the password
    is checked (hms/auth/throttle.py); a successful sign-in gives back the failure slots,
    a failed one the success slot.

    The password is checked after the read transaction has ended and off the gevent loop
    (hms.core.offload): the worker's other requests and streams go on meanwhile, and on
    SQLite no other sign-in waits for this one's write lock (BEGIN IMMEDIATE)."""
    name = username.strip().lower()[:64]
    try:
        reservation = sign_in_throttle.reserve(
            [
                (setting("LOGIN_SUCCESS_LIMIT_PER_CLIENT"), ("sign-in-success-client", client)),
                (setting("LOGIN_LIMIT_PER_CLIENT"), ("sign-in-client", client)),
                (setting("LOGIN_LIMIT_PER_USERNAME_AND_CLIENT"), ("sign-in-user-client", name, client)),
                (setting("LOGIN_LIMIT_PER_USERNAME"), ("sign-in-user", name)),
            ]
        )
    except Refused as refused:
        rate_limited(refused.limit)
        message = TOO_MANY_SIGN_INS.format(window=refused.window_in_words())
        raise TooManyRequests(message, retry_after=refused.retry_after) from None
    with unit_of_work():
        account = _account(username)
    try:
        identity = _check_password(account, password)
    except Unauthorized:
        sign_in_throttle.give_back(reservation.part(0, 1))  # a failure is not a success
        raise
    sign_in_throttle.give_back(reservation.part(1, None))  # nor a success a failure
    return identity


def authenticate(username: str, password: str) -> Identity:
    """The account behind a username and password, or Unauthorized (no limits)."""
    return _check_password(_account(username), password)


def _account(username: str) -> tuple[Identity, str] | None:
    """The account of a username and its password hash, or None."""
    user = db.session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None:
        return None
    return Identity(
        user.id, user.username, user.name, user.role, user.active, user.token_epoch
    ), user.password_hash


def _check_password(account: tuple[Identity, str] | None, password: str) -> Identity:
    if account is None:
        _hashing(check_password_hash, dummy_hash(setting("PASSWORD_HASH_METHOD")), password)
        raise Unauthorized(BAD_LOGIN)
    identity, password_hash = account
    if not _hashing(check_password_hash, password_hash, password) or not identity.active:
        raise Unauthorized(BAD_LOGIN)
    return identity


def issue_token(identity: Identity) -> dict:
    ttl = setting("TOKEN_TTL_SECONDS")
    token = _serializer().dumps([identity.id, identity.token_epoch])
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": ttl,
        "user": identity.public(),
    }


VERIFIED_TOKENS_KEY = "hms.auth.verified_tokens"
_MAX_VERIFIED_TOKENS = 10_000


def _new_verified_tokens() -> BoundedCache[str, tuple[int, int, float]]:
    return BoundedCache(_MAX_VERIFIED_TOKENS)


def _verified_claims(token: str) -> tuple[int, int] | None:
    """(user id, token epoch) of a validly signed, unexpired token, else None.

    The signature is checked once per token per worker: a signed token never changes,
    so what it says is kept (by the exact token text, with its signing time), and only
    the expiry is checked again on later requests. Whether the account is still active
    and the epoch still current is not kept here: that is `_current`'s check, every time."""
    ttl = setting("TOKEN_TTL_SECONDS")
    verified = app_memo(VERIFIED_TOKENS_KEY, _new_verified_tokens)
    claims = verified.get(token)
    if claims is None:
        try:
            (user_id, epoch), signed_at = _serializer().loads(token, max_age=ttl, return_timestamp=True)
        except (SignatureExpired, BadSignature, ValueError, TypeError):
            return None
        claims = (user_id, epoch, signed_at.timestamp())
        verified.set(token, claims)
    age = time.time() - claims[2]
    if age > ttl or age < 0:
        return None
    return claims[0], claims[1]


def identity_from_token(token: str) -> Identity | None:
    claims = _verified_claims(token)
    return None if claims is None else _current(*claims)


# --- page sessions (the signed cookie) ------------------------------------------------------
# A session holds the account and its epoch, a random session id and its sign-in time.
# It ends SESSION_HOURS after sign-in, and at sign-out: the session id is then stored as
# ended in the database (ended_sessions, until the session would have expired anyway), so
# the sign-out holds across a cache flush or a Redis restart. Whether a session is live
# is read through the cache (key session:<id>, "live" for SESSION_CHECK_SECONDS or
# "ended" until its expiry), along with the account's cached identity: no extra round
# trip, and one database read per session per SESSION_CHECK_SECONDS at most. Sign-out
# deletes the cached "live" after its commit (a failed delete is delivered when the
# cache answers again, hms.core.cache).

_CLOCK_SKEW_SECONDS = 60
SESSION_CHECK_SECONDS = 60
_LIVE, _ENDED = "live", "ended"


def _now() -> float:
    return time.time()


def _session_key(session_id: str) -> str:
    return f"session:{session_id}"


def new_session(identity: Identity) -> dict:
    """What a signed-in page session holds."""
    return {
        "uid": identity.id,
        "epoch": identity.token_epoch,
        "sid": secrets.token_urlsafe(16),
        "iat": int(_now()),
    }


def _session_seconds_left(session: dict) -> float | None:
    """Seconds until the session's lifetime ends; None if it has no valid sign-in time."""
    signed_in = session.get("iat")
    if not isinstance(signed_in, int):
        return None
    age = _now() - signed_in
    if age < -_CLOCK_SKEW_SECONDS:
        return None
    return setting("SESSION_HOURS") * 3600 - age


def identity_from_session(session: dict) -> Identity | None:
    user_id, epoch, session_id = session.get("uid"), session.get("epoch"), session.get("sid")
    if not isinstance(user_id, int) or not isinstance(epoch, int) or not isinstance(session_id, str):
        return None
    left = _session_seconds_left(session)
    if left is None or left <= 0:
        return None
    prefetch(_session_key(session_id))  # rides along with the identity's cache read
    identity = _current(user_id, epoch)
    if identity is None or not session_live(session_id):
        return None
    return identity


def session_live(session_id: str) -> bool:
    """False once the session signed out (an open stream asks at each heartbeat)."""
    key = _session_key(session_id)
    state = cache_get(key)
    if state is None:
        ended = db.session.get(EndedSession, session_id[:64])
        state = _ENDED if ended is not None else _LIVE
        seconds = (
            max(1, int((ended.expires_at - utcnow()).total_seconds()))
            if ended is not None
            else SESSION_CHECK_SECONDS
        )
        cache_set(key, state, seconds)
    return state == _LIVE


def end_session(session: dict) -> None:
    """Sign-out: the session's cookie is refused from now on, wherever it is replayed,
    also after a cache flush (the ended session is stored until it would have expired)."""
    session_id, user_id, left = session.get("sid"), session.get("uid"), _session_seconds_left(session)
    if not isinstance(session_id, str) or not isinstance(user_id, int) or left is None or left <= 0:
        return
    now = utcnow()
    with unit_of_work() as uow:
        db.session.execute(delete(EndedSession).where(EndedSession.expires_at < now))
        if db.session.get(User, user_id) is not None:
            expires_at = now + timedelta(seconds=left + _CLOCK_SKEW_SECONDS)
            db.session.merge(EndedSession(session_id=session_id[:64], user_id=user_id, expires_at=expires_at))
        uow.after_commit(lambda _: cache_delete(_session_key(session_id)))


def _current(user_id, epoch) -> Identity | None:
    if not isinstance(user_id, int) or not isinstance(epoch, int):
        return None
    identity = load_identity(user_id)
    if identity is None or not identity.active or identity.token_epoch != epoch:
        return None
    return identity
