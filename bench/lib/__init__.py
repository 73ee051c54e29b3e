"""What the benchmarks (bench/) and the load test (loadtest/) share.

- `services`: PostgreSQL and Redis up, a benchmark's own database recreated and migrated
  (or built from the models), its Redis database flushed, a production app environment.
- `processes`: gunicorn on a free port (`serve`), the CPU time of processes, the
  open-files limit that thousands of streams need.
- `seed`: a clinic written straight into the database with SQL (thousands of rows).
- `results`: the facts every figure needs, results files, before/after worktrees, plots.
- `http`: a keep-alive JSON client (`Http`) and signing in (`sign_in`).
- `sse`: the one Server-Sent Events reader.
- `clinic_day`: a patient's day through the API, step by step, over a small client
  protocol: the scenario the day replay and the Locust file both drive.

Benchmarks reach the app through HTTP or a named public seam (`hms.create_app()`, the
Flask CLI, `hms.queue`'s public functions), never through its internals.
"""
