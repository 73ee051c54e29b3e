"""The one entry point of the benchmarks (`make bench`): run sections, rewrite BENCHMARKS.md.

    .venv/bin/python -m bench.run [--only api,explain] [--duration 10] [--warmup 2]
                                  [--concurrency 50] [--workers 2] [--profile]
                                  [--schema migrations|models]
    .venv/bin/python -m bench.run --list
    .venv/bin/python -m bench.run --render-only

A section is any bench/<name>.py with a module-level `SECTION = "<key>"` (and `ORDER`,
`ACCEPTS`): found by reading the files, not importing them. Each selected section runs
as its own process (`python -m bench.<name>` with the options it ACCEPTS), writes
bench/results/<key>.json, and BENCHMARKS.md is rebuilt from every results file, so the
sections not run this time keep their last results. Exit status 1 if any section failed
(its results, marked failed, still go into BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
# run.py options forwarded to the sections that list them in ACCEPTS.
FORWARDED = ("duration", "warmup", "concurrency", "workers", "profile", "schema")


@dataclass
class Section:
    key: str
    module: str
    order: int
    accepts: tuple[str, ...]


def discover(folder: Path = BENCH_DIR) -> list[Section]:
    sections = []
    for path in sorted(folder.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(), filename=str(path))
        except SyntaxError as error:
            print(f"skipping {path.name}: {error}", file=sys.stderr)
            continue
        constants = {}
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
            ):
                name = node.targets[0].id
                if name in ("SECTION", "ORDER", "ACCEPTS"):
                    with contextlib.suppress(ValueError):
                        constants[name] = ast.literal_eval(node.value)
        if isinstance(constants.get("SECTION"), str):
            sections.append(
                Section(
                    key=constants["SECTION"],
                    module=f"bench.{path.stem}",
                    order=int(constants.get("ORDER", 100)),
                    accepts=tuple(constants.get("ACCEPTS", ())),
                )
            )
    return sorted(sections, key=lambda section: (section.order, section.key))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", help="comma-separated section keys (default: every section)")
    parser.add_argument("--list", action="store_true", help="list the sections and exit")
    parser.add_argument("--render-only", action="store_true", help="only rewrite BENCHMARKS.md")
    parser.add_argument("--duration", type=float, help="measured seconds per load run")
    parser.add_argument("--warmup", type=float, help="discarded seconds before each load run")
    parser.add_argument("--concurrency", type=int, help="closed-loop clients")
    parser.add_argument("--workers", type=int, help="gunicorn gevent workers")
    parser.add_argument("--profile", action="store_true", default=None, help="add py-spy passes")
    parser.add_argument(
        "--schema",
        choices=("migrations", "models"),
        help="schema from the migrations (the sections' default) or from the models (development)",
    )
    return parser.parse_args(argv)


def section_command(section: Section, args: argparse.Namespace) -> list[str]:
    command = [sys.executable, "-m", section.module]
    for option in FORWARDED:
        value = getattr(args, option)
        if value is None or option not in section.accepts:
            continue
        if value is True:
            command.append(f"--{option}")
        else:
            command += [f"--{option}", f"{value:g}" if isinstance(value, float) else str(value)]
    return command


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    from bench import report

    sections = discover()
    if args.list:
        for section in sections:
            print(f"{section.key:12} {section.module}  (options: {', '.join(section.accepts) or 'none'})")
        return 0
    if args.render_only:
        print(f"wrote {report.write()}")
        return 0
    chosen = sections
    if args.only:
        keys = [key.strip() for key in args.only.split(",") if key.strip()]
        known = {section.key: section for section in sections}
        unknown = [key for key in keys if key not in known]
        if unknown:
            print(f"unknown sections {unknown}; there are: {', '.join(known)}", file=sys.stderr)
            return 2
        chosen = [known[key] for key in keys]
    quoted = " ".join(shlex.quote(arg) for arg in argv)
    if os.environ.get("MAKELEVEL"):
        via = "make bench" + (f' BENCH_ARGS="{quoted}"' if quoted else "")
    else:
        via = f".venv/bin/python -m bench.run {quoted}".strip()
    failed = []
    for section in chosen:
        command = section_command(section, args)
        print(f"== {section.key}: {' '.join(command[1:])}", flush=True)
        started = time.monotonic()
        status = subprocess.run(
            command, cwd=ROOT, env={**os.environ, "BENCH_VIA": via}, check=False
        ).returncode
        print(f"== {section.key}: exit {status} after {time.monotonic() - started:.0f} s", flush=True)
        if status != 0:
            failed.append(section.key)
    print(f"wrote {report.write()}")
    if failed:
        print(f"FAILED sections: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
