"""Load test of `melp serve` on 127.0.0.1: N requests from C concurrent clients, with and without
micro-batching, side by side.

    python bench/serve_load.py --tiny-random                  # a random tiny model: runs anywhere
    python bench/serve_load.py --model DIR --record ../shared/data/ludb/data/1.hea

Each run starts its own server (`melp serve` in a subprocess on a free port), waits for
/v1/health, sends one warm-up request, then the N timed POST /v1/classify requests (one 10 s
12-lead record each, the page's default class list; --endpoint report|embed|analyze for the
others) and prints throughput (requests/s), p50/p95
latency and the error count, which must be 0 (the exit status is 1 otherwise). On Linux it also prints
the server's resident memory after the warm-up request and after the timed ones, and its peak: the
server keeps freed memory for reuse (melp.train.host_memory), so it should settle, not grow.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_random_model(folder: Path) -> Path:
    import torch

    import melp

    torch.manual_seed(0)
    return melp.MELP.from_preset("tiny").save_pretrained(folder / "tiny-random")


def synthetic_records(folder: Path, n: int = 4) -> list[list[Path]]:
    """n simulated 10 s, 500 Hz records as WFDB (.hea, .dat)."""
    import wfdb

    from melp import synth
    from melp.data.leads import CANONICAL_LEADS

    batch = synth.simulate(n, seed=0)
    records = []
    for i, signal in enumerate(batch.signals):
        wfdb.wrsamp(f"sim{i}", fs=500, units=["mV"] * 12, sig_name=list(CANONICAL_LEADS),
                    p_signal=np.asarray(signal, np.float64).T, fmt=["16"] * 12, write_dir=str(folder))
        records.append([folder / f"sim{i}.hea", folder / f"sim{i}.dat"])
    return records


def record_files(hea: str) -> list[Path]:
    path = Path(hea)
    return [path, path.with_suffix(".dat")] if path.suffix == ".hea" else [path]


class Server:
    """`melp serve` in a subprocess; stopped on exit."""

    def __init__(self, model: Path, batching: bool, precision: str, wait_ms: float | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "melp.cli", "serve", "--model", str(model), "--port", str(self.port),
                   "--precision", precision] + ([] if wait_ms is None else ["--wait-ms", str(wait_ms)])
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(command + ([] if batching else ["--no-batching"]),
                                        stdout=self.log, stderr=subprocess.STDOUT)

    def __enter__(self):
        import httpx

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"melp serve exited:\n{self.log.read().decode(errors='replace')}")
            try:
                if httpx.get(self.url + "/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("melp serve did not answer /v1/health within 180 s")

    def __exit__(self, *exc):
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def memory_mb(pid: int) -> dict[str, float]:
    """Resident (VmRSS) and peak resident (VmHWM) memory of a process, MB; empty where /proc has none."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return {}
    fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM") if key in fields}


def load(url: str, records: list[list[Path]], requests: int, clients: int, pid: int) -> dict:
    """``url``: the endpoint to POST the records to; ``pid``: the server's process, for its memory."""
    import httpx

    payloads = [[("file", (p.name, p.read_bytes())) for p in files] for files in records]
    with httpx.Client(timeout=300) as warm:
        warm.post(url, files=payloads[0]).raise_for_status()
    warm_memory = memory_mb(pid)

    def one(i: int) -> tuple[float, str | None]:
        start = time.perf_counter()
        try:
            with httpx.Client(timeout=300) as client:  # a client of its own, as separate users would have
                response = client.post(url, files=payloads[i % len(payloads)])
            error = None if response.status_code == 200 else f"{response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as e:
            error = repr(e)
        return time.perf_counter() - start, error

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    latencies = sorted(r[0] for r in results)
    errors = [r[1] for r in results if r[1]]
    return {"throughput": requests / wall, "p50": statistics.median(latencies),
            "p95": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], "errors": len(errors),
            "first_error": errors[0] if errors else None, "wall": wall,
            "memory": (warm_memory, memory_mb(pid))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="model folder to serve")
    source.add_argument("--tiny-random", action="store_true", help="serve a random tiny model built here")
    parser.add_argument("--record", action="append", default=[],
                        help="a .hea (its .dat beside it) or single-file record to send; repeatable "
                             "(default: 4 simulated 10 s records)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--endpoint", default="classify", choices=["classify", "report", "embed", "analyze"],
                        help="what to ask (default classify; report: beam search, the heaviest model call)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--only", choices=["batching", "no-batching"], help="run one mode only")
    parser.add_argument("--wait-ms", type=float, nargs="+", default=[None],
                        help="batching runs with each of these --wait-ms (default: the server's)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="melp-serve-load-") as tmp:
        tmp = Path(tmp)
        model = Path(args.model) if args.model else tiny_random_model(tmp)
        records = [record_files(r) for r in args.record] or synthetic_records(tmp)
        modes = [("batching", w) for w in args.wait_ms if args.only in (None, "batching")]
        modes += [("no-batching", None)] if args.only in (None, "no-batching") else []
        print(f"melp serve load: {args.requests} POST /v1/{args.endpoint} from {args.clients} concurrent clients, "
              f"{len(records)} record(s), model {'tiny-random' if args.tiny_random else model}, "
              f"{args.precision}, {os.cpu_count()} CPU(s)")
        results = {}
        for mode, wait_ms in modes:
            name = mode if wait_ms is None else f"{mode} (wait {wait_ms:g} ms)"
            with Server(model, mode == "batching", args.precision, wait_ms) as server:
                results[name] = load(f"{server.url}/v1/{args.endpoint}", records, args.requests, args.clients,
                                     server.process.pid)
            r = results[name]
            print(f"  {name:<24} {r['throughput']:7.2f} req/s   p50 {r['p50'] * 1000:7.0f} ms   "
                  f"p95 {r['p95'] * 1000:7.0f} ms   errors {r['errors']}   ({r['wall']:.1f} s)", flush=True)
            warm, end = r["memory"]
            if warm and end:
                print(f"    server memory: {warm['VmRSS']:.0f} MB after the warm-up, {end['VmRSS']:.0f} MB after "
                      f"{args.requests} requests (peak {end['VmHWM']:.0f} MB)")
            if r["first_error"]:
                print(f"    first error: {r['first_error']}")
        if "no-batching" in results:
            for name, r in results.items():
                if name != "no-batching":
                    print(f"  {name} / no-batching throughput: {r['throughput'] / results['no-batching']['throughput']:.2f}x")
    return 1 if any(r["errors"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
