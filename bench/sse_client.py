"""The gevent processes of the stream-capacity benchmark (bench/stream_capacity.py).

`read`: thousands of streams in one process, each one raw gevent socket and one greenlet
(no thread per stream), read by bench.lib.sse (the one SSE reader of the benchmarks: a
plain HTTP/1.1 GET, a chunked or unframed body, `id:` / `data:` lines and `:` comments).
Per stream it keeps the HTTP status, when the
first event came, every event's (id, arrival time, data bytes), every comment's (ping's)
arrival time, and how the stream ended. Times are time.monotonic(), which on Linux is
one clock for every process of the machine, so they compare with the driver's.

    python -m bench.sse_client read SPEC.json OUT.json

SPEC: {"host", "port", "source_ip" (optional, spreads the ephemeral ports over several
loopback addresses), "headers": {...}, "concurrency": opens in flight,
"wait_first": true to count an open as done at its first event (HMS sends a snapshot at
once) or false at the request being written (flask-sse sends nothing until a message),
"streams": [{"index", "doctor", "path"}]}. While running it prints one JSON status line
per second ({"opened", "sent", "first_event", "failed", "ended", "events", "pings"}); it
stops, closes every socket and writes OUT when a line "stop" arrives on stdin.

`drive`: an open-loop change generator. It starts request i at t0 + i/rate whatever
the earlier answers are doing (keep-alive connections from a pool, more opened as
needed), so a slow server shows as latency, not as a lower rate.

    python -m bench.sse_client drive SPEC.json OUT.json

SPEC: {"host", "port", "mode": "hms" | "hms-direct" | "flask-sse", "token" (hms),
"app_env" (hms-direct), "size" (flask-sse message bytes), "rate", "duration",
"doctors": [...], "first_version" (flask-sse), "max_in_flight"}. hms: POST
/api/queue/<doctor>/next, whose answer is the snapshot with the new version.
hms-direct: see DirectChanges (no HTTP). flask-sse: POST /publish/<doctor>
{"version", "size"} with the next version of that doctor. OUT: one row per change: doctor, version, status,
t_sched, t_start (before the request is written), t_resp (answer read).
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import contextlib  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import gevent.lock  # noqa: E402
import gevent.queue  # noqa: E402
from gevent import socket  # noqa: E402

from bench.lib.processes import raise_open_files_limit  # noqa: E402
from bench.lib.sse import Comment, EventStream, StreamEnded, request_bytes  # noqa: E402


class Stream:
    __slots__ = (
        "index",
        "doctor",
        "path",
        "status",
        "t_open",
        "t_headers",
        "t_first",
        "events",
        "pings",
        "t_end",
        "end",
        "sock",
    )

    def __init__(self, index: int, doctor: int, path: str):
        self.index, self.doctor, self.path = index, doctor, path
        self.status = 0
        self.t_open = self.t_headers = self.t_first = self.t_end = None
        self.events: list[tuple] = []  # (id, arrival, data bytes)
        self.pings: list[float] = []
        self.end: str | None = None
        self.sock = None

    def as_dict(self) -> dict:
        return {
            "index": self.index,
            "doctor": self.doctor,
            "status": self.status,
            "t_open": self.t_open,
            "t_headers": self.t_headers,
            "t_first": self.t_first,
            "t_end": self.t_end,
            "end": self.end,
            "events": self.events,
            "pings": self.pings,
        }


class Reader:
    def __init__(self, spec: dict):
        self.spec = spec
        self.streams = [Stream(s["index"], s["doctor"], s["path"]) for s in spec["streams"]]
        self.stopping = False
        self.counts = {
            "opened": 0,
            "sent": 0,
            "first_event": 0,
            "failed": 0,
            "ended": 0,
            "events": 0,
            "pings": 0,
        }
        self._gate = gevent.lock.Semaphore(int(spec.get("concurrency", 100)))

    def _request(self, stream: Stream) -> bytes:
        headers = {
            "Host": f"{self.spec['host']}:{self.spec['port']}",
            "Accept": "text/event-stream",
            "Cache-Control": "no-cache",
            **self.spec.get("headers", {}),
        }
        lines = [f"GET {stream.path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
        return "\r\n".join(lines).encode()

    def _fail(self, stream: Stream, reason: str) -> None:
        if stream.end is None:
            stream.end, stream.t_end = reason, time.monotonic()
            self.counts["failed" if stream.t_first is None else "ended"] += 1

    def run_stream(self, stream: Stream) -> None:
        held = [True]

        def release_gate() -> None:
            # An open is "done" at its first event (or at the request written, for a
            # server that sends nothing first), or when it fails: the next one starts.
            if held[0]:
                held[0] = False
                self._gate.release()

        self._gate.acquire()
        try:
            stream.t_open = time.monotonic()
            self.counts["opened"] += 1
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            stream.sock = sock
            if self.spec.get("source_ip"):
                sock.bind((self.spec["source_ip"], 0))
            sock.settimeout(60)
            sock.connect((self.spec["host"], self.spec["port"]))
            host = f"{self.spec['host']}:{self.spec['port']}"
            sock.sendall(request_bytes(stream.path, host, self.spec.get("headers", {})))
            sock.settimeout(None)
            self.counts["sent"] += 1
            if not self.spec.get("wait_first", True):
                release_gate()
            self._read(stream, EventStream(sock), release_gate)
        except StreamEnded as ended:
            if not self.stopping:
                self._fail(stream, ended.reason)
        except Exception as error:  # noqa: BLE001 - every failure is a finding to record
            if not self.stopping:
                self._fail(stream, f"{type(error).__name__}: {error}"[:200])
        finally:
            release_gate()
            if stream.sock is not None:
                stream.sock.close()

    def _read(self, stream: Stream, events: EventStream, release_gate) -> None:
        """Record the stream's events and pings until it ends (StreamEnded says how)."""
        stream.status = events.read_head()
        stream.t_headers = events.head_time
        events.expect_ok()
        for at, item in events.items():
            if isinstance(item, Comment):
                stream.pings.append(at)
                self.counts["pings"] += 1
                continue
            if stream.t_first is None:
                stream.t_first = at
                self.counts["first_event"] += 1
                release_gate()
            try:
                parsed = int(item.id) if item.id is not None else None
            except ValueError:
                parsed = None
            stream.events.append((parsed, at, len(item.data)))
            self.counts["events"] += 1

    def report(self) -> None:
        while not self.stopping:
            print(json.dumps(self.counts), flush=True)
            gevent.sleep(1.0)

    def run(self, out_path: str) -> None:
        greenlets = [gevent.spawn(self.run_stream, stream) for stream in self.streams]
        reporter = gevent.spawn(self.report)
        # stdin through gevent's file object, so waiting on it does not block the hub
        from gevent.fileobject import FileObject

        stdin = FileObject(sys.stdin.fileno(), "r")
        for line in stdin:
            if line.strip() == "stop":
                break
        self.stopping = True
        reporter.kill()
        for stream in self.streams:
            if stream.sock is not None:
                with contextlib.suppress(OSError):
                    stream.sock.shutdown(socket.SHUT_RDWR)
        gevent.joinall(greenlets, timeout=10)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        with open(out_path, "w") as out:
            json.dump(
                {
                    "counts": self.counts,
                    "cpu_seconds": usage.ru_utime + usage.ru_stime,
                    "max_rss_kb": usage.ru_maxrss,
                    "streams": [stream.as_dict() for stream in self.streams],
                },
                out,
            )
        print(json.dumps({"done": True}), flush=True)


# --- driving changes ----------------------------------------------------------------------


class DirectChanges:
    """hms-direct: a queue change without the HTTP write path, through the app's public seam.

    In an app context of HMS (same database and Redis as the server): one unit of work
    (`hms.core.uow.unit_of_work`) that calls `hms.queue.touch_queues_of_doctor`, the
    function other packages call when what a snapshot shows of a doctor changes: it
    bumps the version of the doctor's queues (and returns them) and does what every
    queue change does: while a stream watches, the snapshot is read just before the
    COMMIT and its events ride with the message; after the COMMIT the cache tag is
    replaced and the broker told. This isolates the fan-out (pub/sub, the writes to the
    streams) from the cost of an API write."""

    def __init__(self, env: dict):
        # Only this mode needs the app (the readers never import it), in the server's settings.
        os.environ.update(env)
        from hms import create_app
        from hms.core.uow import unit_of_work
        from hms.queue import touch_queues_of_doctor

        self.app = create_app()
        self.unit_of_work, self.touch_queues_of_doctor = unit_of_work, touch_queues_of_doctor

    def change(self, doctor: int) -> int:
        with self.app.app_context(), self.unit_of_work():
            touched = self.touch_queues_of_doctor(doctor)
        if not touched:
            raise RuntimeError(f"doctor {doctor} has no queue today")
        return max(version for _, _, version in touched)


class Driver:
    def __init__(self, spec: dict):
        self.spec = spec
        self.direct = DirectChanges(spec["app_env"]) if spec["mode"] == "hms-direct" else None
        self.pool: gevent.queue.Queue = gevent.queue.Queue()
        self.gate = gevent.lock.Semaphore(int(spec.get("max_in_flight", 200)))
        self.next_version: dict[int, int] = {}
        self.rows: list[dict] = []

    def _connection(self) -> http.client.HTTPConnection:
        try:
            return self.pool.get_nowait()
        except gevent.queue.Empty:
            return http.client.HTTPConnection(self.spec["host"], self.spec["port"], timeout=30)

    def _request(self, doctor: int) -> tuple[str, str, bytes, dict, int | None]:
        if self.spec["mode"] == "hms":
            headers = {"Authorization": f"Bearer {self.spec['token']}", "Content-Length": "0"}
            return "POST", f"/api/queue/{doctor}/next", b"", headers, None
        version = self.next_version.get(doctor, int(self.spec.get("first_version", 2)))
        self.next_version[doctor] = version + 1
        body = json.dumps({"version": version, "size": int(self.spec.get("size", 2048))}).encode()
        return "POST", f"/publish/{doctor}", body, {"Content-Type": "application/json"}, version

    def send(self, row: dict) -> None:
        if self.direct is not None:
            with self.gate:
                row["t_start"] = time.monotonic()
                try:
                    row["version"] = self.direct.change(row["doctor"])
                    row["status"] = 200
                except Exception as error:  # noqa: BLE001 - recorded, the run goes on
                    row["error"] = f"{type(error).__name__}: {error}"[:200]
                row["t_resp"] = time.monotonic()
            return
        method, path, body, headers, row["version"] = self._request(row["doctor"])
        with self.gate:
            conn = self._connection()
            row["t_start"] = time.monotonic()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                row["t_resp"] = time.monotonic()
                row["status"] = response.status
                if response.status == 200 and self.spec["mode"] == "hms":
                    row["version"] = json.loads(payload)["version"]
                elif response.status != 200:
                    row["error"] = payload[:200].decode("utf-8", "replace")
                self.pool.put(conn)
            except Exception as error:  # noqa: BLE001 - recorded, the run goes on
                row["t_resp"] = time.monotonic()
                row["error"] = f"{type(error).__name__}: {error}"[:200]
                conn.close()

    def run(self, out_path: str) -> None:
        rate, duration = float(self.spec["rate"]), float(self.spec["duration"])
        doctors = self.spec["doctors"]
        total = int(rate * duration)
        greenlets = []
        t0 = time.monotonic() + 0.2
        for number in range(total):
            target = t0 + number / rate
            delay = target - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
            row = {"n": number, "doctor": doctors[number % len(doctors)], "status": 0, "t_sched": target}
            self.rows.append(row)
            greenlets.append(gevent.spawn(self.send, row))
        # Every request times out after 30 s (HTTPConnection); one still waiting for a
        # pooled connection then stays in the rows with status 0 and no t_start.
        gevent.joinall(greenlets, timeout=45)
        for row in self.rows:
            if "t_resp" not in row:
                row["error"] = row.get("error") or "no answer before the driver stopped"
        usage = resource.getrusage(resource.RUSAGE_SELF)
        with open(out_path, "w") as out:
            json.dump(
                {
                    "t0": t0,
                    "t_last_sent": time.monotonic(),
                    "cpu_seconds": usage.ru_utime + usage.ru_stime,
                    "rows": sorted(self.rows, key=lambda row: row["n"]),
                },
                out,
            )


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("read", "drive"):
        print(__doc__)
        return 2
    raise_open_files_limit()
    with open(argv[1]) as spec_file:
        spec = json.load(spec_file)
    if argv[0] == "read":
        Reader(spec).run(argv[2])
    else:
        Driver(spec).run(argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
