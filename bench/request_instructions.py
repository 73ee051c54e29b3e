"""What the per-request checks cost, in CPU instructions: this tree against an older one.

    .venv/bin/python -m bench.request_instructions                    # against BASE_DEFAULT
    .venv/bin/python -m bench.request_instructions --base 9ab2417 --kinds pay --requests 100

CPU time per request moves by 10% and more from run to run on a shared 2-core machine
(bench.step_cost's pay step read +3% and +12% on the same code); instruction counts do
not. Each tree runs bench/request_instructions_probe.py (this tree's copy) under
valgrind's callgrind, counting only inside the measured requests (Flask's test client
in process, SQLite and the in-process cache: the app's own Python work, no network):

- me: GET /api/auth/me with a bearer token (authentication and the request hooks alone);
- queue: GET /api/queue/<doctor> (the cached snapshot, the hottest read);
- pay: POST /api/bills/<id>/payments with an Idempotency-Key (a write with a JSON body).

Instructions convert to time at this machine's rate, measured in the same run: the
current tree's requests once more without valgrind, their CPU time (time.process_time)
divided by their instructions (taken on the lightest kind, Python work only: a write's
CPU time also holds the kernel's time for SQLite's file writes, which callgrind does not
count; a loaded machine makes the rate, not the instruction counts, worse). The default base is main before the issue-17
hardening landed (1637af9, issue 13 alone).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.lib import results

SECTION = "request_instructions"
TITLE = "The per-request checks in CPU instructions, before and after (issue 17)"
ORDER = 66
ACCEPTS: tuple[str, ...] = ()
BASE_DEFAULT = "1637af9"
PROBE = Path(__file__).resolve().parent / "request_instructions_probe.py"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", default=BASE_DEFAULT, help="git revision to compare with")
    parser.add_argument("--kinds", default="me,queue,pay", help="requests measured, comma-separated")
    parser.add_argument("--requests", type=int, default=100, help="measured requests of each kind")
    return parser.parse_args(argv)


def _probe(
    tree: Path,
    kind: str,
    requests: int,
    valgrind: bool,
    settings: dict | None = None,
    env: dict | None = None,
) -> int | float:
    """Instructions callgrind counted in `requests` requests of `kind` in `tree`, or
    (valgrind False) the CPU seconds they took; with configuration `settings` and extra
    environment variables `env` (e.g. TEST_REDIS_URL: the cache and limits in Redis)."""
    with tempfile.TemporaryDirectory(prefix="hms-instr-") as folder:
        command = [sys.executable, "-P", str(PROBE), "--app-root", str(tree), "--requests", str(requests),
                   "--kind", kind, "--database", f"{folder}/probe.sqlite"]  # fmt: skip
        command += [f"--setting={name}={value}" for name, value in (settings or {}).items()]
        if valgrind:
            command = ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=functools_reduce",
                       f"--callgrind-out-file={folder}/callgrind.out", *command]  # fmt: skip
        environment = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree), "HMS_ENV": "testing", **(env or {})}
        finished = subprocess.run(
            command, cwd=tree, env=environment, capture_output=True, text=True, check=False
        )
    match = re.search(
        r"Collected : (\d+)" if valgrind else r"cpu_seconds (\S+)", finished.stderr + finished.stdout
    )
    if finished.returncode != 0 or not match:
        raise RuntimeError(f"probe of {kind} in {tree} failed:\n{finished.stdout}\n{finished.stderr[-3000:]}")
    return int(match.group(1)) if valgrind else float(match.group(1))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = results.environment()
    kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    with results.worktree(args.base) as (base, tree), ThreadPoolExecutor(max_workers=2) as pool:
        jobs = {
            (side, kind): pool.submit(_probe, root, kind, args.requests, True)
            for kind in kinds
            for side, root in (("base", tree), ("current", results.ROOT))
        }
        counts = {f"{side}:{kind}": job.result() / args.requests for (side, kind), job in jobs.items()}
    # The rate from the lightest kind: Python work only. A write's CPU time also holds the
    # kernel's time for SQLite's file writes, which callgrind does not count.
    busiest = min(kinds, key=lambda kind: counts[f"current:{kind}"])
    cpu = _probe(results.ROOT, busiest, args.requests, False) / args.requests
    ns_per_instruction = round(cpu * 1e9 / counts[f"current:{busiest}"], 3)
    print(counts, ns_per_instruction, flush=True)
    path = results.write_result(
        SECTION,
        title=TITLE,
        order=ORDER,
        renderer="bench.request_instructions:render",
        data={
            "base": base,
            "current": env["git"],
            "requests": args.requests,
            "kinds": kinds,
            "ns_per_instruction": ns_per_instruction,
            "rate_from": busiest,
            "instructions_per_request": counts,
        },
        env=env,
    )
    print(f"wrote {path}")
    return 0


def render(result: dict) -> str:
    data = result["data"]
    rate = data["ns_per_instruction"]
    lines = [
        f"Instructions per request (valgrind callgrind, {data['requests']} requests of each kind after 20 not "
        f"counted; Flask's test client in process, SQLite, in-process cache), {data['base']} (before) against "
        f"{data['current']} (after). CPU time at {rate} ns per instruction: the after tree's {data['rate_from']} "
        "requests' CPU time (time.process_time, no valgrind) over their instructions, in the same run.",
        "",
        "| request | before | after | change | ≈ CPU ms change |",
        "|---|---:|---:|---:|---:|",
    ]
    counts = data["instructions_per_request"]
    for kind in data["kinds"]:
        before, after = counts[f"base:{kind}"], counts[f"current:{kind}"]
        change = after - before
        lines.append(
            f"| {kind} | {before:,.0f} | {after:,.0f} | {change:+,.0f} ({change / before * 100:+.1f}%) "
            f"| {change * rate / 1e6:+.3f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
