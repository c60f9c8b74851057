"""Benchmark: the whole ``tailorcast ingest`` process against a bare DuckDB load of the same CSV.

Target (issue): on a 5M-event CSV from the demo generator, ingest (validation, dedupe,
pseudonymization, commit) takes at most 3x a bare ``CREATE TABLE e AS SELECT * FROM
read_csv(...)`` into a DuckDB file, with peak memory under 4 GB.

Both sides run as separate child processes and are timed around the whole process, so
interpreter start-up, imports and the final checkpoint count. Peak memory is the child's
``ru_maxrss`` from ``os.wait4``. The two sides alternate (bare, tailorcast, tailorcast, bare,
...) and the ratio compares medians from the same run, because absolute seconds on a shared
2-core machine drift from run to run.

Usage::

    python benchmarks/ingest.py                          # 5M events, 2 repeats
    python benchmarks/ingest.py --events 200000 --repeat 1   # quick check, < 1 minute

Figures go to ``benchmarks/results/ingest.json`` (``--out``); a short table is printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from tailorcast.datasets import write_events_csv

RATIO_TARGET = 3.0
PEAK_TARGET_MB = 4096.0
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "ingest.json"
# The generator's default start (2026-01-05) plus its 365 days runs past today, and ingest
# refuses future timestamps: a tenth of the rows would be rejected cheaply, and how many would
# depend on the day the benchmark runs. A year wholly in the past keeps the work fixed.
DEFAULT_START = "2025-01-06"

# The bare side: nothing but DuckDB reading the CSV into a fresh database file.
BARE_LOAD = """\
import sys
import duckdb

con = duckdb.connect(sys.argv[1])
path = sys.argv[2].replace("'", "''")
con.execute(f"CREATE TABLE e AS SELECT * FROM read_csv('{path}')")
con.close()
"""


@dataclass
class Run:
    side: str  # "bare" or "tailorcast"
    repeat: int
    seconds: float
    peak_mb: float
    exit_code: int
    load_avg_before: float  # 1-minute load average: other processes on the machine
    output_mb: float  # size of the DuckDB file or store folder written
    details: dict[str, Any] = field(default_factory=dict)
    # user + system CPU seconds of the child (all its threads): steadier than wall time
    # when other work shares the machine
    cpu_seconds: float = 0.0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.gettempdir()) / "tc-bench"
    workdir.mkdir(parents=True, exist_ok=True)
    csv = _events_csv(workdir, args.events, args.seed, args.start)
    _warm_page_cache(csv)
    runs_dir = Path(tempfile.mkdtemp(prefix="ingest-runs-", dir=workdir))
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    runs: list[Run] = []
    failure: str | None = None
    try:
        for r in range(args.repeat):
            # Alternate so neither side always runs first (warm caches, a neighbour's load).
            order = ("bare", "tailorcast") if r % 2 == 0 else ("tailorcast", "bare")
            for side in order:
                out = runs_dir / f"{side}-{r}"
                if side == "bare":
                    run = _bare(csv, out, r, env, args.events)
                else:
                    run = _tailorcast(csv, out, r, env, args.events)
                runs.append(run)
                _log(run)
                if run.exit_code != 0 or "error" in run.details:
                    failure = f"{side} run {r}: {run.details.get('error', 'failed')}"
                    break
            if failure:
                break
    finally:
        if args.keep:
            print(f"kept run outputs in {runs_dir}")
        else:
            shutil.rmtree(runs_dir, ignore_errors=True)
    result = _summarise(args, csv, runs, failure)
    _write(Path(args.out), result)
    _print_table(result)
    print(f"figures written to {args.out}")
    return 0 if failure is None else 1


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--events", type=int, default=5_000_000, help="rows in the CSV (5,000,000)")
    p.add_argument("--repeat", type=int, default=2, help="runs of each side (2)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON file for the figures")
    p.add_argument(
        "--workdir",
        default=None,
        help="folder for the generated CSV (cached by rows, seed and start) and the runs' "
        "outputs (default: <tmp>/tc-bench)",
    )
    p.add_argument("--keep", action="store_true", help="keep the DuckDB files and stores")
    p.add_argument("--seed", type=int, default=7, help="generator seed (7)")
    p.add_argument("--start", default=DEFAULT_START, help=f"first day of events ({DEFAULT_START})")
    args = p.parse_args(argv)
    if args.events < 1 or args.repeat < 1:
        p.error("--events and --repeat must be at least 1")
    return args


def _events_csv(workdir: Path, n: int, seed: int, start: str) -> Path:
    """The generated CSV, reused when a previous run left it for the same arguments."""
    path = workdir / f"events-{n}-seed{seed}-{start}.csv"
    if path.exists():
        print(f"reusing {path}")
        return path
    print(f"generating {n:,} events into {path} ...", flush=True)
    began = time.perf_counter()
    partial = path.with_suffix(".partial")
    write_events_csv(partial, n, seed=seed, start=start)
    partial.replace(path)  # an interrupted generation never passes for a cached file
    print(f"  generated in {time.perf_counter() - began:.1f} s")
    return path


def _warm_page_cache(path: Path) -> None:
    """Read the file once so that no side pays for the first read from disk."""
    with path.open("rb") as f:
        while f.read(16 << 20):
            pass


def _child(
    cmd: list[str], env: dict[str, str], log: Path
) -> tuple[float, float, int, float, float]:
    """Run ``cmd`` to completion; return wall seconds, peak RSS in MB, the exit code, the
    1-minute load average just before it started and the CPU seconds (user + system)."""
    load = os.getloadavg()[0]
    with (log.with_suffix(".out")).open("wb") as out, (log.with_suffix(".err")).open("wb") as err:
        began = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - began
    # wait4 reaped the child; tell Popen so it does not wait or warn.
    proc.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss is in kilobytes on Linux, in bytes on macOS.
    scale = 1 << 20 if sys.platform == "darwin" else 1 << 10
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, usage.ru_maxrss / scale, proc.returncode, load, cpu


def _bare(csv: Path, out: Path, repeat: int, env: dict[str, str], n: int) -> Run:
    out.mkdir()
    db = out / "bare.duckdb"
    seconds, peak, code, load, cpu = _child(
        [sys.executable, "-c", BARE_LOAD, str(db), str(csv)], env, out / "bare"
    )
    details: dict[str, Any] = {}
    if code == 0:
        # Checked after the clock stopped: the load must have read every row.
        con = duckdb.connect(str(db), read_only=True)
        row = con.execute("SELECT count(*) FROM e").fetchone()
        con.close()
        details["rows"] = int(row[0]) if row else 0
        if details["rows"] != n:
            details["error"] = f"bare load holds {details['rows']} rows, expected {n}"
    else:
        details["error"] = _tail(out / "bare.err")
    return Run("bare", repeat, seconds, peak, code, load, _size_mb(out), details, cpu)


def _tailorcast(csv: Path, out: Path, repeat: int, env: dict[str, str], n: int) -> Run:
    store = out / "store"
    cmd = [sys.executable, "-m", "tailorcast.cli.main", "ingest", str(csv)]
    cmd += ["--store", str(store), "--insecure-dev", "--json"]
    out.mkdir()
    seconds, peak, code, load, cpu = _child(cmd, env, out / "ingest")
    details: dict[str, Any] = {}
    if code != 0:
        details["error"] = f"exit code {code}: {_tail(out / 'ingest.err')}"
        return Run("tailorcast", repeat, seconds, peak, code, load, _size_mb(out), details, cpu)
    try:
        report = json.loads((out / "ingest.out").read_text())
    except json.JSONDecodeError as e:
        details["error"] = f"ingest --json printed no JSON ({e}): {_tail(out / 'ingest.out')}"
        return Run("tailorcast", repeat, seconds, peak, code, load, _size_mb(out), details, cpu)
    keys = ("rows_read", "accepted", "rejected", "duplicates")
    counts = {k: int(report.get(k, -1)) for k in keys}
    details.update(counts)
    details["rejected_by_reason"] = report.get("rejected_by_reason", {})
    files = report.get("files") or [{}]
    details["near_duplicates"] = files[0].get("near_duplicates")
    details["ingest_seconds"] = files[0].get("seconds")  # as ingest itself timed its work
    total = counts["accepted"] + counts["rejected"] + counts["duplicates"]
    details["reconciles"] = counts["rows_read"] == total == n
    if not details["reconciles"]:
        details["error"] = (
            f"counts do not reconcile: rows_read {counts['rows_read']}, accepted + rejected + "
            f"duplicates {total}, events in the file {n}"
        )
    return Run("tailorcast", repeat, seconds, peak, code, load, _size_mb(out), details, cpu)


def _summarise(
    args: argparse.Namespace, csv: Path, runs: list[Run], failure: str | None
) -> dict[str, Any]:
    def side(name: str) -> dict[str, Any]:
        mine = [r for r in runs if r.side == name]
        return {
            "runs": [asdict(r) for r in mine],
            "median_seconds": statistics.median(r.seconds for r in mine) if mine else None,
            "median_cpu_seconds": statistics.median(r.cpu_seconds for r in mine) if mine else None,
            "median_peak_mb": statistics.median(r.peak_mb for r in mine) if mine else None,
            "max_peak_mb": max((r.peak_mb for r in mine), default=None),
        }

    bare, tc = side("bare"), side("tailorcast")
    ratio = None
    if failure is None and bare["median_seconds"] and tc["median_seconds"] is not None:
        ratio = tc["median_seconds"] / bare["median_seconds"]
    cpu_ratio = None
    if failure is None and bare["median_cpu_seconds"] and tc["median_cpu_seconds"] is not None:
        cpu_ratio = tc["median_cpu_seconds"] / bare["median_cpu_seconds"]
    ratio_ok = ratio is not None and ratio <= RATIO_TARGET
    peak_ok = (
        tc["max_peak_mb"] is not None and failure is None and tc["max_peak_mb"] < PEAK_TARGET_MB
    )
    return {
        "benchmark": "ingest",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
            "tailorcast": _tailorcast_version(),
            "memory_gb": _memory_gb(),
        },
        "source": _git_state(),
        "events": args.events,
        "seed": args.seed,
        "start": args.start,
        "file": str(csv),
        "file_mb": round(csv.stat().st_size / 2**20, 1),
        "repeat": args.repeat,
        "bare": bare,
        "tailorcast": tc,
        "ratio": round(ratio, 3) if ratio is not None else None,
        # not a target: CPU work of the two sides, a check on wall times taken under load
        "cpu_ratio": round(cpu_ratio, 3) if cpu_ratio is not None else None,
        "targets": {"ratio_max": RATIO_TARGET, "peak_mb_max": PEAK_TARGET_MB},
        "pass": {"ratio": ratio_ok, "peak": peak_ok, "all": ratio_ok and peak_ok},
        "error": failure,
    }


def _write(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)


def _log(run: Run) -> None:
    note = run.details.get("error", "")
    print(
        f"  {run.side:<10} #{run.repeat}  {run.seconds:7.2f} s  {run.cpu_seconds:7.2f} s CPU"
        f"  {run.peak_mb:7.0f} MB peak"
        f"  (load {run.load_avg_before:.1f}) {note}",
        flush=True,
    )


def _print_table(result: dict[str, Any]) -> None:
    print()
    print(f"{result['events']:,} events, {result['file_mb']} MB CSV")
    print(f"{'':<12}{'median s':>10}{'CPU s':>8}{'peak MB':>10}   runs (s)")
    for name in ("bare", "tailorcast"):
        s = result[name]
        if s["median_seconds"] is None:
            continue
        each = ", ".join(f"{r['seconds']:.2f}" for r in s["runs"])
        print(
            f"{name:<12}{s['median_seconds']:>10.2f}{s['median_cpu_seconds']:>8.2f}"
            f"{s['max_peak_mb']:>10.0f}   {each}"
        )
    ok = result["pass"]
    if result["ratio"] is not None:
        print(
            f"ratio tailorcast/bare {result['ratio']:.2f} (target <= {RATIO_TARGET}): "
            f"{'pass' if ok['ratio'] else 'FAIL'}; peak target < {PEAK_TARGET_MB:.0f} MB: "
            f"{'pass' if ok['peak'] else 'FAIL'}; CPU ratio {result['cpu_ratio']:.2f}"
        )
    if result["error"]:
        print(f"error: {result['error']}")


def _tail(path: Path, lines: int = 5) -> str:
    text = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return " | ".join(text[-lines:]) or "(no output)"


def _size_mb(folder: Path) -> float:
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    total -= sum(p.stat().st_size for p in folder.glob("*.out")) + sum(
        p.stat().st_size for p in folder.glob("*.err")
    )
    return round(total / 2**20, 1)


def _tailorcast_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("tailorcast")
    except Exception:
        return None


def _git_state() -> dict[str, Any] | None:
    """The commit measured, and the source files changed on top of it."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit, "changed": [line[3:] for line in changed]}


def _memory_gb() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return round(pages * size / 2**30, 1)


if __name__ == "__main__":
    sys.exit(main())
