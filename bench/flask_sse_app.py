"""The live-stream baseline: flask-sse 1.0.0's `sse` blueprint, as documented, on the same
Redis and served by the same gunicorn settings (gevent workers) as HMS.

    REDIS_URL=redis://127.0.0.1:6379/9 WEB_CONCURRENCY=2 \
        gunicorn -c gunicorn.conf.py bench.flask_sse_app:app

- `GET /stream?channel=doctor-<id>`: flask-sse's stream view, unchanged. Each open
  stream subscribes on its OWN Redis pub/sub connection (that is the point of the
  comparison with HMS's one subscriber per worker). It sends nothing until the first
  message is published (no first snapshot, no heartbeat: flask-sse has neither).
- `POST /publish/<doctor_id>` `{"version": V, "size": N}`: publishes one `queue` event
  with id V whose JSON data is about N bytes (a stand-in for a queue snapshot of that
  size) with `sse.publish`, as an app using flask-sse would after a change.
- `GET /readyz`: for bench.lib.processes (it waits for a 200 before measuring).

Nothing here authenticates: flask-sse has no access control of its own.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from flask import Flask, abort, request
from flask_sse import sse

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/9"
app.register_blueprint(sse, url_prefix="/stream")


def snapshot_like(doctor_id: int, version: int, size: int) -> dict:
    """A dict shaped like the head of a queue snapshot, padded to about `size` bytes of JSON."""
    data = {
        "doctor": {"id": doctor_id, "name": f"Dr. Bench {doctor_id}"},
        "date": datetime.now(UTC).date().isoformat(),
        "version": version,
        "entries": "",
    }
    overhead = len(str(data)) + 8
    data["entries"] = "x" * max(0, size - overhead)
    return data


@app.post("/publish/<int:doctor_id>")
def publish(doctor_id: int):
    body = request.get_json(silent=True) or {}
    version, size = body.get("version"), body.get("size", 2048)
    if not isinstance(version, int) or not isinstance(size, int) or not 0 <= size <= 1_000_000:
        abort(422)
    sse.publish(
        snapshot_like(doctor_id, version, size), type="queue", id=version, channel=f"doctor-{doctor_id}"
    )
    return {"version": version}


@app.get("/readyz")
def readyz():
    return {"status": "ok"}
