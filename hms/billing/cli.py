"""Billing's command line: `flask --app wsgi billing purge-idempotency-keys`.

Registered on the billing blueprint (hms.billing.routes), so the idempotency module
itself stays free of Flask: the command reads the app's config and passes the TTL.
"""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from hms.core.idempotency import PURGE_BATCH, purge_expired, ttl_from


@click.command("purge-idempotency-keys")
@with_appcontext
def purge_command() -> None:
    """Delete idempotency records older than IDEMPOTENCY_TTL_SECONDS (default 24 h)."""
    ttl = ttl_from(current_app.config)
    total = 0
    while True:
        purged = purge_expired(ttl=ttl)
        total += purged
        if purged < PURGE_BATCH:
            break
    click.echo(f"purged {total} expired idempotency records")
