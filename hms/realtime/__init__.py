"""Live streams as transport only: the broker (in-process or Redis pub/sub), one open
Server-Sent Events stream, and the per-topic connection limit. It imports no domain:
the publishing package hands it bytes and loaders."""

from flask import Flask

from hms.realtime.broker import QueueBroker
from hms.realtime.limiter import StreamSlots


def init_app(app: Flask) -> None:
    """The app's broker and stream slots (Redis when REDIS_URL is set; nothing connects yet)."""
    QueueBroker().init_app(app)
    StreamSlots().init_app(app)
