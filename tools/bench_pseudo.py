"""Ray scaling of pseudo-labelling: 1 vs N local workers, and a two-node cluster on this machine.

    python tools/bench_pseudo.py CONFIG --images DIR --out-root DIR \
        [--workers 1 2] [--two-node] [--json OUT]

Each run starts from an empty output folder under ``--out-root`` (so nothing is skipped
and no teacher cache is reused). ``--two-node`` starts a head node and a second node with
one CPU each (``ray start --block``, this script owns and stops both processes), runs with
``--address`` and checks that both nodes did work. Prints JSON: per run the wall seconds,
start-up seconds, images/s after start-up, and the speed-up over the first run.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cellfuse.app.cli import print_json  # noqa: E402
from cellfuse.config import load_config  # noqa: E402
from ensemble.pseudolabel import Manifest, run_pseudo_label  # noqa: E402

log = logging.getLogger("bench_pseudo")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


def _wait_for_nodes(address: str, n: int, timeout: float = 120.0) -> None:
    import ray

    t0 = time.time()
    ray.init(address=address, logging_level=logging.WARNING)
    try:
        while sum(x["Alive"] for x in ray.nodes()) < n:
            if time.time() - t0 > timeout:
                raise TimeoutError(
                    f"only {sum(x['Alive'] for x in ray.nodes())} of {n} Ray nodes came up"
                )
            time.sleep(1.0)
    finally:
        ray.shutdown()


def run_once(cfg, images: str, out: Path, **kwargs) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    summary = run_pseudo_label(cfg, images, out, progress=False, **kwargs)
    nodes = {e.get("node") for e in Manifest(out / "manifest.jsonl").entries()}
    keys = ("done", "failed", "seconds", "startup_seconds", "images_per_s", "workers")
    return {**{k: summary[k] for k in keys}, "nodes_used": len(nodes)}


def two_node_run(cfg, images: str, out: Path) -> dict[str, Any]:
    """Start a 2-node cluster (1 CPU each) on this machine, run on it, stop it."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="cf2n", dir="/tmp")
    common = ["--num-cpus", "1", "--block", "--disable-usage-stats", "--temp-dir", temp]
    procs = []
    try:
        procs.append(
            subprocess.Popen(
                [
                    _ray_cli(),
                    "start",
                    "--head",
                    "--port",
                    str(port),
                    "--include-dashboard=false",
                    *common,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        address = f"127.0.0.1:{port}"
        time.sleep(5.0)
        procs.append(
            subprocess.Popen(
                [_ray_cli(), "start", "--address", address, *common],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        _wait_for_nodes(address, 2)
        return run_once(cfg, images, out, address=address, num_workers=2)
    finally:
        for p in reversed(procs):  # our own `ray start --block` processes stop their nodes
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(temp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("config")
    ap.add_argument("--images", required=True)
    ap.add_argument("--out-root", required=True)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--two-node", action="store_true")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cfg = load_config(args.config)
    root = Path(args.out_root)
    runs: dict[str, Any] = {}
    for n in args.workers:
        runs[f"local_{n}"] = run_once(cfg, args.images, root / f"local_{n}", num_workers=n)
        log.info("local %d workers: %s", n, runs[f"local_{n}"])
    if args.two_node:
        runs["two_node"] = two_node_run(cfg, args.images, root / "two_node")
        log.info("two nodes: %s", runs["two_node"])
    base = next(iter(runs.values()))
    for r in runs.values():
        r["speedup_wall"] = round(base["seconds"] / r["seconds"], 3)
        r["speedup_throughput"] = (
            round(r["images_per_s"] / base["images_per_s"], 3) if base["images_per_s"] else 0.0
        )
    result = {"config": args.config, "images": args.images, "cpus": os.cpu_count(), "runs": runs}
    return print_json(result, args.json)


if __name__ == "__main__":
    from cellfuse.entry import run_tool

    sys.exit(run_tool(main))
