"""Benchmark: the HTTP server under load, against a bare FastAPI endpoint in the same run.

Targets (issue 4), on a demo shop of 100k customers and 20k items, one server worker:

1. ``GET /v1/customers/{id}/recommendations`` throughput >= 50% of a bare FastAPI app's
   constant endpoint (same uvicorn, same client, same machine, measured alternately);
2. p99 latency <= 25 ms at a steady 200 requests/s for 60 s, with zero errors;
3. ``POST /v1/events`` >= 2,000 events/s in batches of 100, and every event found in the
   store afterwards.

Everything runs on loopback and is bounded in count and time. Both servers are real
``uvicorn`` processes (the tailorcast one is ``tailorcast serve``); the load comes from
another process, a small asyncio HTTP/1.1 keep-alive client written here on purpose:
a general client library (httpx, requests) spends more CPU per request than the server's
floor, and on a 2-core machine would measure itself. Latency in the fixed-rate phase is
counted from each request's *scheduled* send time, so a stalled server cannot hide its
queueing (no coordinated omission).

Usage::

    python benchmarks/serve_load.py            # full run (about 8 minutes with the shop)
    python benchmarks/serve_load.py --quick    # small shop, short phases (about 1 minute)

Figures go to ``benchmarks/results/serve_load.json`` (``--out``); a short table is printed.
The demo store is built once under ``--workdir`` and each run serves a fresh copy of it, so
the events one run posts (named ``bench-<run>-<n>`` and counted per run) never pile up on
the next run's customers as events newer than the model. Recommendations are asked for every
customer of the shop in random order (plus one unknown customer in ten, the cold start), so
no small set of customers is served again and again.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "serve_load.json"
RATIO_TARGET = 0.5
P99_TARGET_MS = 25.0
EVENTS_TARGET = 2000.0

FLOOR_APP = """
import sys, uvicorn
from fastapi import FastAPI
app = FastAPI()
@app.get("/v1/constant")
async def constant() -> dict[str, bool]:
    return {"ok": True}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            access_log=False, server_header=False)
"""


# -- the load client (runs in its own process) -----------------------------------------------
async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> tuple[int, bytes]:
    writer.write(raw)
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("server closed the connection")
    status = int(status_line.split()[1])
    length, chunked = 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length)
    body = b""
    while True:
        size = int((await reader.readline()).strip(), 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return status, body
        body += chunk[:-2]


def _get(path: str, key: str | None) -> bytes:
    auth = f"X-API-Key: {key}\r\n" if key else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode()


def _post(path: str, key: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _closed_loop(
    port: int, requests: list[bytes], concurrency: int, seconds: float, warmup: float
) -> dict[str, Any]:
    """``concurrency`` connections, each sending back to back; counts after the warm-up."""
    done = errors = 0
    start = time.perf_counter()
    measure_from = start + warmup
    stop = measure_from + seconds

    async def worker(offset: int) -> None:
        nonlocal done, errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = offset
        try:
            while (now := time.perf_counter()) < stop:
                status, _ = await _exchange(reader, writer, requests[i % len(requests)])
                i += concurrency
                if now >= measure_from:
                    if status == 200:
                        done += 1
                    else:
                        errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker(c) for c in range(concurrency)))
    return {
        "requests": done,
        "errors": errors,
        "seconds": seconds,
        "per_second": round(done / seconds, 1),
        "concurrency": concurrency,
    }


async def _fixed_rate(
    port: int, requests: list[bytes], rate: float, seconds: float, connections: int
) -> dict[str, Any]:
    """Open loop: request n is due at ``n / rate``; latency counts from when it was due."""
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    total = int(rate * seconds)
    latencies: list[float] = []
    errors: list[str] = []
    start = time.perf_counter() + 0.2

    async def one(n: int) -> None:
        due = start + n / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        conn = await pool.get()
        try:
            status, _ = await _exchange(*conn, requests[n % len(requests)])
            if status != 200:
                errors.append(str(status))
        except (OSError, asyncio.IncompleteReadError, ConnectionError) as exc:
            errors.append(type(exc).__name__)
            conn = await asyncio.open_connection("127.0.0.1", port)
        finally:
            latencies.append((time.perf_counter() - due) * 1000)
            pool.put_nowait(conn)

    # Bounded: a server too slow for the rate would otherwise queue for many minutes; what
    # has not been answered by then counts as an error (and as the slowest latency).
    tasks = [asyncio.ensure_future(one(n)) for n in range(total)]
    _, pending = await asyncio.wait(tasks, timeout=seconds * 1.5 + 10)
    for task in pending:
        task.cancel()
    errors.extend("not answered in time" for _ in pending)
    latencies.extend(float("inf") for _ in pending)
    while not pool.empty():
        pool.get_nowait()[1].close()
    latencies.sort()

    def pct(p: float) -> float | None:
        value = latencies[min(len(latencies) - 1, int(p * len(latencies)))]
        return round(value, 2) if value != float("inf") else None

    return {
        "rate": rate,
        "seconds": seconds,
        "requests": total,
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
    }


async def _post_batches(
    port: int, bodies: list[bytes], key: str, concurrency: int
) -> dict[str, Any]:
    queue = list(enumerate(bodies))
    accepted = errors = 0

    async def worker() -> None:
        nonlocal accepted, errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue:
                _, body = queue.pop()
                status, answer = await _exchange(reader, writer, _post("/v1/events", key, body))
                if status == 200:
                    accepted += int(json.loads(answer)["accepted"])
                else:
                    errors += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    return {
        "batches": len(bodies),
        "accepted": accepted,
        "errors": errors,
        "seconds": round(seconds, 3),
        "events_per_second": round(accepted / seconds, 1),
    }


def client(kind: str, **kwargs: Any) -> dict[str, Any]:
    """Entry point of the client process."""
    run = {"closed": _closed_loop, "fixed": _fixed_rate, "events": _post_batches}[kind]
    return asyncio.run(run(**kwargs))  # type: ignore[operator]


# -- servers ---------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server process on a free loopback port, up when ``/healthz`` (or the floor) answers."""

    def __init__(self, cmd: list[str], log: Path, probe: str) -> None:
        self.port = _free_port()
        self.log = log
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [*cmd, str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(_get(probe, None))
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not come up")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the shop --------------------------------------------------------------------------------
def _shop(workdir: Path, customers: int, items: int, days: int, model: str) -> tuple[Path, Path]:
    """The demo store (built once per size and reused) and its customers file."""
    from tailorcast.cli.ingest_cmd import run_ingest
    from tailorcast.datasets import demo_shop
    from tailorcast.ingest.config import IngestConfig
    from tailorcast.store import Store
    from tailorcast.training import train

    # "-v2": the stores built before runs served copies hold earlier runs' posted events.
    root = workdir / f"shop-{customers}-{items}-{days}-{model}-v2"
    store, ready = root / "store", root / "READY"
    if not ready.exists():
        shutil.rmtree(root, ignore_errors=True)
        print(f"building the demo shop ({customers:,} customers, {items:,} items)...", flush=True)
        files = demo_shop(n_customers=customers, n_items=items, days=days, seed=7).write(
            root / "data"
        )
        run_ingest(
            store,
            IngestConfig(),
            events=files.events,
            users=files.customers,
            items=files.items,
            insecure_dev=True,
            show_progress=False,
        )
        with Store.open(store, read_only=True) as opened:
            train(opened, model)
        ready.write_text("ok")
    return store, root / "data" / "customers.csv"


def _ids(path: Path, column: str, n: int, rng: random.Random) -> list[str]:
    import pandas as pd

    values = pd.read_csv(path, usecols=[column], dtype=str)[column].dropna().unique().tolist()
    return rng.sample(values, min(n, len(values)))


def _store_items(store: Path) -> list[str]:
    from tailorcast.store import Store

    with Store.open(store, read_only=True) as opened:
        return [
            str(r[0])
            for r in opened.con.execute(
                "SELECT DISTINCT item_id FROM items WHERE item_id IS NOT NULL"
            ).fetchall()
        ]


def _count_posted(store: Path, run_id: str) -> int:
    """Posted events that reached the store's events table (after the server's final merge;
    anything still spooled is merged here first, as the next server or CLI job would)."""
    from tailorcast.config import Settings
    from tailorcast.privacy import resolve_keys
    from tailorcast.serving.engine import ServingEngine
    from tailorcast.store import Store

    keys = resolve_keys(Settings(), store, insecure_dev=True, create=False)
    engine = ServingEngine(store, keys=keys, background=False, candidate_depth=0)
    try:
        engine.flush(timeout_s=120)
    finally:
        engine.close()
    with Store.open(store, read_only=True) as opened:
        rows = opened.con.execute(
            "SELECT count(DISTINCT event_id) FROM events WHERE event_id LIKE ?",
            [f"bench-{run_id}-%"],
        ).fetchall()
    return int(rows[0][0])


# -- the run ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.quick:
        args.customers, args.items, args.days = 10_000, 2_000, 30
        args.seconds, args.latency_seconds, args.batches = 3.0, 10.0, 30
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    pristine, customers_csv = _shop(workdir, args.customers, args.items, args.days, args.model)
    run_id = secrets.token_hex(4)
    store = workdir / f"run-{run_id}" / "store"
    shutil.copytree(pristine, store)
    rng = random.Random(args.seed)
    column = "customer_id" if _has(customers_csv, "customer_id") else "user_id"
    known = _ids(customers_csv, column, args.customers, rng)
    people = known + [f"U-unknown-{i}" for i in range(len(known) // 10)]  # some cold starts
    rng.shuffle(people)
    items = _store_items(store)

    from tailorcast.serving.auth import KeyStore

    key = KeyStore(store).create(["read", "write"], name="serve_load benchmark").key
    recs = [_get(f"/v1/customers/{c}/recommendations?k=10", key) for c in people]
    floor_req = [_get("/v1/constant", None)]
    # The HTTP layer alone (key check, rate limit, metrics, access log), no engine work:
    # tells the server's own overhead apart from the recommender's.
    readyz = [_get("/readyz", key)]
    logs = Path(tempfile.mkdtemp(prefix="serve-load-"))
    pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
    result: dict[str, Any] = {"benchmark": "serve_load", "quick": args.quick}
    failure = None
    try:
        floor = Server([sys.executable, "-c", FLOOR_APP], logs / "floor.log", "/v1/constant")
        tc = Server(
            [
                sys.executable,
                "-m",
                "tailorcast.cli.main",
                "serve",
                "--store",
                str(store),
                "--insecure-dev",
                "--rate-limit",
                "0",
                "--no-docs",
                "--port",
            ],
            logs / "tailorcast.log",
            "/healthz",
        )
        try:
            rounds: dict[str, list[dict[str, Any]]] = {
                "floor": [],
                "keyed_readyz": [],
                "recommendations": [],
            }
            series = (
                ("floor", floor, floor_req),
                ("keyed_readyz", tc, readyz),
                ("recommendations", tc, recs),
            )
            for r in range(args.rounds):  # alternate, so drift on a shared machine hits all
                for name, srv, reqs in series:
                    got = pool.submit(
                        client,
                        "closed",
                        port=srv.port,
                        requests=reqs,
                        concurrency=args.concurrency,
                        seconds=args.seconds,
                        warmup=1.0,
                    ).result()
                    rounds[name].append(got)
                    print(
                        f"  round {r + 1} {name:<16} {got['per_second']:>9,.0f} req/s "
                        f"({got['errors']} errors)",
                        flush=True,
                    )
            floor.stop()
            latency = pool.submit(
                client,
                "fixed",
                port=tc.port,
                requests=recs,
                rate=args.rate,
                seconds=args.latency_seconds,
                connections=32,
            ).result()
            print(
                f"  fixed {args.rate:.0f} req/s for {args.latency_seconds:.0f} s: "
                f"p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms, "
                f"{latency['errors']} errors",
                flush=True,
            )
            bodies = _event_batches(run_id, args.batches, people, items, rng)
            events = pool.submit(
                client,
                "events",
                port=tc.port,
                bodies=bodies,
                key=key,
                concurrency=args.event_concurrency,
            ).result()
            print(
                f"  events: {events['events_per_second']:,.0f} events/s "
                f"({events['accepted']:,} accepted, {events['errors']} errors)",
                flush=True,
            )
        finally:
            floor.stop()
            tc.stop()
        found = _count_posted(store, run_id)
        best_floor = max(r["per_second"] for r in rounds["floor"])
        best_recs = max(r["per_second"] for r in rounds["recommendations"])
        best_readyz = max(r["per_second"] for r in rounds["keyed_readyz"])
        ratio = best_recs / best_floor if best_floor else None
        posted = args.batches * 100
        result.update(
            {
                "throughput": {
                    **rounds,
                    "floor_best": best_floor,
                    "keyed_readyz_best": best_readyz,
                    "keyed_readyz_ratio": round(best_readyz / best_floor, 3),
                    "recommendations_best": best_recs,
                    "ratio": round(ratio, 3) if ratio else None,
                },
                "latency": latency,
                "events": {**events, "posted": posted, "found_in_store": found},
            }
        )
        result["pass"] = {
            "throughput_ratio": bool(ratio and ratio >= RATIO_TARGET),
            "p99": (latency["p99_ms"] or float("inf")) <= P99_TARGET_MS and not latency["errors"],
            "events_rate": events["events_per_second"] >= EVENTS_TARGET and events["errors"] == 0,
            "events_stored": found == posted,
        }
        result["pass"]["all"] = all(result["pass"].values())
    except Exception as exc:  # the figures file says what broke instead of vanishing
        failure = f"{type(exc).__name__}: {exc}"
        print(f"error: {failure}", file=sys.stderr)
    finally:
        pool.shutdown()
    result.update(_context(args, pristine, failure))
    _write(Path(args.out), result)
    print(f"figures written to {args.out}")
    shutil.rmtree(logs, ignore_errors=True)
    shutil.rmtree(store.parent, ignore_errors=True)
    return 0 if failure is None else 1


def _has(path: Path, column: str) -> bool:
    with path.open(encoding="utf-8") as fh:
        return column in fh.readline().strip().split(",")


def _event_batches(
    run_id: str, batches: int, people: list[str], items: list[str], rng: random.Random
) -> list[bytes]:
    kinds = ["view"] * 6 + ["favorite", "cart", "cart", "purchase"]
    now = dt.datetime.now(dt.UTC)
    bodies = []
    for b in range(batches):
        events = []
        for i in range(100):
            n = b * 100 + i
            event: dict[str, Any] = {
                "user_id": rng.choice(people),
                "item_id": rng.choice(items),
                "event_type": rng.choice(kinds),
                "event_id": f"bench-{run_id}-{n}",
                "timestamp": (now - dt.timedelta(seconds=n % 3600)).isoformat(),
            }
            if event["event_type"] == "purchase":
                event["amount"] = round(rng.uniform(5, 200), 2)
            events.append(event)
        bodies.append(json.dumps({"events": events}).encode())
    return bodies


def _context(args: argparse.Namespace, store: Path, failure: str | None) -> dict[str, Any]:
    import duckdb

    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
            "load_avg": [round(x, 2) for x in os.getloadavg()],
        },
        "source": _git_state(),
        "shop": {
            "customers": args.customers,
            "items": args.items,
            "days": args.days,
            "model": args.model,
            "store": str(store),
        },
        "settings": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "concurrency": args.concurrency,
            "rate": args.rate,
            "latency_seconds": args.latency_seconds,
            "batches": args.batches,
            "event_concurrency": args.event_concurrency,
            "workers": 1,
        },
        "targets": {
            "throughput_ratio_min": RATIO_TARGET,
            "p99_ms_max": P99_TARGET_MS,
            "events_per_second_min": EVENTS_TARGET,
        },
        "error": failure,
    }


def _git_state() -> dict[str, Any] | None:
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


def _write(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
    tmp.replace(path)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small shop, short phases")
    p.add_argument("--customers", type=int, default=100_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--model", default="als", help="model trained for serving")
    p.add_argument("--rounds", type=int, default=2, help="floor/readyz/recommendation alternations")
    p.add_argument("--seconds", type=float, default=10.0, help="each throughput measurement")
    p.add_argument("--concurrency", type=int, default=16, help="connections, throughput")
    p.add_argument("--rate", type=float, default=200.0, help="requests/s, latency phase")
    p.add_argument("--latency-seconds", type=float, default=60.0)
    p.add_argument("--batches", type=int, default=200, help="event batches of 100")
    p.add_argument("--event-concurrency", type=int, default=4)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "tc-bench-serve"))
    p.add_argument("--out", default=str(DEFAULT_OUT))
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
