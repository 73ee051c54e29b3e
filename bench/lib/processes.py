"""Processes a benchmark starts or watches: gunicorn on a free port, the CPU time of a
set of processes, and the open-files limit that thousands of sockets need.

- `serve(app_spec, ...)` / `start_server(...)` run gunicorn with the project's
  gunicorn.conf.py and N gevent workers on a free loopback port (the HMS app is
  "wsgi:app", the baseline "bench.hello_app:app"), wait until it answers, and stop the
  whole process group at the end.
- `cpu_seconds(pids)`: user + system CPU time of other processes (Linux /proc);
  `own_cpu_seconds()`: this process's.
- `raise_open_files_limit(needed)`: the soft RLIMIT_NOFILE up to `needed` (or the hard
  limit), as a process holding one socket per stream must.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.lib.results import OUT_DIR, ROOT
from bench.lib.services import app_env

# --- this process ---------------------------------------------------------------------------


def raise_open_files_limit(needed: int | None = None) -> None:
    """Raise the soft open-files limit to `needed` (None: as far as the hard limit allows)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if needed is None else needed
    if hard != resource.RLIM_INFINITY:
        target = min(hard, target)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def own_cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- other processes (Linux /proc) -------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command (which may contain spaces)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (a vanished one counts 0)."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The ids of the processes whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry))
    return sorted(found)


# --- gunicorn ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    name: str
    app_spec: str
    port: int
    workers: int
    process: subprocess.Popen
    log_path: Path

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_pids(self) -> list[int]:
        return children(self.process.pid)

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it if it has not ended in 30 s."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass


def http_get(url: str, timeout: float = 2.0) -> int:
    """The status of GET `url` (0: no answer)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def start_server(
    app_spec: str,
    *,
    dsn: str,
    redis_url: str | None,
    workers: int = 2,
    name: str = "hms",
    ready_path: str = "/readyz",
    extra_env: dict[str, str] | None = None,
) -> Server:
    """gunicorn -c gunicorn.conf.py APP_SPEC with `workers` gevent workers on a free port."""
    port = free_port()
    env = app_env(
        dsn,
        redis_url,
        HOST="127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY=str(workers),
        GUNICORN_LOGLEVEL="warning",
        **(extra_env or {}),
    )
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    log_path = OUT_DIR / f"{name}-{port}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), app_spec],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(name, app_spec, port, workers, process, log_path)
    try:
        _wait_until_ready(server, ready_path)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_until_ready(server: Server, ready_path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name}: gunicorn exited early; see {server.log_path}")
        if http_get(server.base + ready_path) == 200 and len(server.worker_pids()) >= server.workers:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{server.name}: gunicorn did not come up in {timeout:.0f} s; see {server.log_path}"
            )
        time.sleep(0.2)
    # One worker answered; the others may still be importing the app. Every request
    # of the warm-up is discarded anyway, and this pause covers the imports.
    time.sleep(1.0)


@contextmanager
def serve(app_spec: str, **kwargs) -> Iterator[Server]:
    server = start_server(app_spec, **kwargs)
    try:
        yield server
    finally:
        server.stop()
