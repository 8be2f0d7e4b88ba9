"""The service image against the same code outside a container, in one run: what the container costs.

For one corpus (a real collection: MEDLINE's MED.ALL by default) and one model (the packaged
MiniLM), each measured in the image (podman) and bare (this checkout's venv), alternating so that
a noisy host hits both alike:
- the indexing job: `semsearch index build --precision fp32`, docs/s;
- cold start: `semsearch serve` to the first 200 from `/ready`, over --starts starts each;
- query latency: `POST /search` (k 10) with the collection's own queries, both servers up at
  once and requests alternating, sequential, p50 / p99.
Plus the image's size and, with --build, its build time through deploy/build-image.py.

    python benchmarks/container_image.py --image localhost/semsearch:latest \\
        --data ../shared/data/ir-classic/med [--build --base localhost/semsearch-base:bookworm]

Both sides serve with SEMSEARCH_PRECISION=fp32 (the auto choice times candidates and could pick
differently in each). Prints one JSON object; ratios are container over bare.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
from harness.server_process import free_port
from harness.stats import percentile

from core.defaults import default_model_dir
from core.smart import read_smart

REPO = Path(__file__).resolve().parent.parent

VENV_BIN = Path(sys.executable).parent
SERVE_ENV = {"SEMSEARCH_PRECISION": "fp32", "SEMSEARCH_RELOAD_INTERVAL_S": "0"}


class Podman:
    def __init__(self, work: Path) -> None:
        conf = work / "containers.conf"
        subprocess.run(["python3", str(REPO / "deploy" / "containers-conf.py"), str(conf)], check=True)
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}

    def __call__(self, *args: str, timeout: float = 600) -> str:
        proc = subprocess.run(
            ["podman", *args], capture_output=True, text=True, timeout=timeout, env=self.env
        )
        if proc.returncode != 0:
            raise SystemExit(f"podman {' '.join(args[:3])}: {proc.stderr[-2000:]}")
        return proc.stdout


def _wait_ready(base: str, timeout: float = 300) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return time.monotonic() - start
        time.sleep(0.05)
    raise SystemExit(f"{base} not ready after {timeout} s")


@contextlib.contextmanager
def _container_server(podman: Podman, image: str, volume: str) -> Iterator[tuple[str, float]]:
    port, name = free_port(), f"bench-{uuid.uuid4().hex[:8]}"
    env = [a for k, v in SERVE_ENV.items() for a in ("-e", f"{k}={v}")]
    start = time.monotonic()
    podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000", "-v", f"{volume}:/data", *env, image)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base)
        yield base, time.monotonic() - start
    finally:
        podman("rm", "-f", "-t", "5", name)


@contextlib.contextmanager
def _bare_server(index: Path, log: Path) -> Iterator[tuple[str, float]]:
    port = free_port()
    env = {**os.environ, **SERVE_ENV, "HF_HUB_OFFLINE": "1"}
    argv = [str(VENV_BIN / "semsearch"), "serve", "--index", str(index), "--port", str(port)]
    start = time.monotonic()
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base)
        yield base, time.monotonic() - start
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default="localhost/semsearch:latest")
    ap.add_argument("--data", type=Path, required=True, help="a folder with MED.ALL / MED.QRY (SMART)")
    ap.add_argument("--corpus", default="MED.ALL")
    ap.add_argument("--queries", default="MED.QRY")
    ap.add_argument("--builds", type=int, default=2, help="index builds each")
    ap.add_argument("--starts", type=int, default=5, help="cold starts each")
    ap.add_argument("--repeats", type=int, default=5, help="passes over the queries")
    ap.add_argument("--build", action="store_true", help="build --image first, timed")
    ap.add_argument("--base", help="with --build: the base image (PYTHON_IMAGE)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="container-bench-"))
    podman = Podman(work)
    out: dict[str, object] = {"image": args.image, "corpus": str(args.data / args.corpus)}
    if args.build:
        cmd = ["python3", str(REPO / "deploy" / "build-image.py"), "--tag", args.image]
        cmd += ["--base", args.base] if args.base else []
        start = time.monotonic()
        subprocess.run(cmd, check=True, env=podman.env, stdout=subprocess.DEVNULL)
        out["build_s"] = round(time.monotonic() - start, 1)
    out["image_mb"] = round(int(podman("image", "inspect", "--format", "{{.Size}}", args.image)) / 1e6, 1)

    data = work / "data"
    shutil.copytree(args.data, data)
    for path in (work, data, *data.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)  # the image's uid 10001 reads them
    docs = sum(1 for _ in read_smart(data / args.corpus))
    queries = [text for _, text in read_smart(data / args.queries)]
    volume = f"bench-{uuid.uuid4().hex[:8]}"
    podman("volume", "create", volume)
    build = ["index", "build", "--precision", "fp32", "--no-progress"]
    model = str(default_model_dir())  # the packaged MiniLM, as the image links it
    times: dict[str, list[float]] = {"container": [], "bare": []}
    try:
        for n in range(args.builds):
            start = time.monotonic()
            podman(
                "run", "--rm", "-v", f"{volume}:/data", "-v", f"{data}:/corpus:ro", args.image, "semsearch",
                *build, "--model", "/opt/semsearch/model", "--corpus", f"/corpus/{args.corpus}",
                "--output", f"/data/index{n}",
            )  # fmt: skip
            times["container"].append(time.monotonic() - start)
            start = time.monotonic()
            subprocess.run(
                [str(VENV_BIN / "semsearch"), *build, "--model", model, "--corpus", str(data / args.corpus),
                 "--output", str(work / f"index{n}")],
                check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
            )  # fmt: skip
            times["bare"].append(time.monotonic() - start)
        out["index_build_docs_per_s"] = {k: round(docs / min(v), 1) for k, v in times.items()}
        out["index_build_s_each"] = {k: [round(t, 1) for t in v] for k, v in times.items()}
        out["index_build_ratio"] = round(min(times["container"]) / min(times["bare"]), 3)

        # The container serves /data/index: point it at the first build.
        podman(
            "run", "--rm", "-v", f"{volume}:/data", args.image, "sh", "-c",
            "rm -rf /data/index && mv /data/index0 /data/index",
        )  # fmt: skip
        log = work / "bare-serve.log"
        starts: dict[str, list[float]] = {"container": [], "bare": []}
        for _ in range(args.starts):
            with _container_server(podman, args.image, volume) as (_, took):
                starts["container"].append(took)
            with _bare_server(work / "index0", log) as (_, took):
                starts["bare"].append(took)
        out["cold_start_s"] = {
            k: {"p50": round(statistics.median(v), 2), "max": round(max(v), 2)} for k, v in starts.items()
        }
        out["cold_start_ratio"] = round(
            statistics.median(starts["container"]) / statistics.median(starts["bare"]), 3
        )

        lat: dict[str, list[float]] = {"container": [], "bare": []}
        with (
            _container_server(podman, args.image, volume) as (cbase, _),
            _bare_server(work / "index0", log) as (bbase, _),
            httpx.Client(timeout=60) as client,
        ):
            bases = {"container": cbase, "bare": bbase}
            for q in queries[:5]:  # warm-up, both
                for base in bases.values():
                    client.post(f"{base}/search", json={"query": q, "k": 10})
            for rep in range(args.repeats):
                order = ["container", "bare"] if rep % 2 == 0 else ["bare", "container"]
                for q in queries:
                    for side in order:
                        start = time.perf_counter()
                        r = client.post(f"{bases[side]}/search", json={"query": q, "k": 10})
                        lat[side].append((time.perf_counter() - start) * 1000)
                        r.raise_for_status()
        out["search_ms"] = {
            k: {"n": len(v), "p50": round(percentile(v, 50), 2), "p99": round(percentile(v, 99), 2)}
            for k, v in lat.items()
        }
        out["search_p50_ratio"] = round(percentile(lat["container"], 50) / percentile(lat["bare"], 50), 3)
    finally:
        subprocess.run(["podman", "volume", "rm", "-f", volume], env=podman.env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
