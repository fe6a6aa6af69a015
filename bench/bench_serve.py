"""Load test of `lensloop serve`: /v1/predict on one 128 x 128 PNG under concurrent clients.

Usage:
    .venv/bin/python bench/bench_serve.py [--clients 32] [--duration 20] [--warmup 3]
        [--project DIR] [--model-kind probe|finetune] [--workers 1] [--target-p99-ms 200]

Builds a small classification project under ``--work`` (3 classes of noisy coloured
images, ingested with folder labels) with a released classifier, or reuses ``--project``
(which must have one). ``--model-kind probe`` (default) is the logistic probe on the
offline ``features`` backbone's embeddings, as the tests use; ``finetune`` trains a small
EfficientNet-Lite0 from random weights for 2 epochs (about a minute), so every request
runs a CNN through ONNX Runtime instead.

The server runs in a subprocess on 127.0.0.1 and a free port, so client and server do
not share a GIL: ``lensloop serve DIR --no-retrain`` (one uvicorn process, the default
serve path), or with ``--workers N > 1`` uvicorn's own ``--workers`` over the same app.
After ``/health`` answers, ``--clients`` asyncio tasks (one httpx.AsyncClient, one
connection each) POST the same 128 x 128 RGB PNG as multipart ``file`` to /v1/predict in
a loop: ``--warmup`` seconds not counted, then ``--duration`` seconds counted. Latency is
per request, from send to the whole answer read.

``--endpoint health`` loads GET /health instead: what the server and client stack alone
sustain on this machine, the ceiling for any model.

Prints the model kind, req/s, p50 / p90 / p99 / max latency and errors as a Markdown
table. Exits 1 if any request failed or p99 >= ``--target-p99-ms``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image as PILImage

from lensloop.project import Project

COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}
SIDE = 128


def make_project(root: Path, kind: str, arch: str, input_size: int) -> Path:
    """A project with 3 x 20 labelled images and a released ``kind`` classifier."""
    from lensloop.embed.engine import embed_project
    from lensloop.embed.registry import BackboneOptions, get_backbone
    from lensloop.project.ingest import IngestOptions, ingest
    from lensloop.train.config import TrainConfig
    from lensloop.train.trainer import train_model

    folder = root / (f"project-{kind}" if kind == "probe" else f"project-{arch}-{input_size}")
    if (folder / "lensloop.toml").exists():
        return folder
    rng = np.random.default_rng(0)
    images = root / "images"
    for name, colour in COLOURS.items():
        for index in range(20):
            noise = rng.normal(0, 30, size=(48, 48, 3))
            pixels = np.clip(np.array(colour)[None, None, :] + noise, 0, 255).astype(np.uint8)
            path = images / name / f"{index}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            PILImage.fromarray(pixels).save(path)
    with Project.init(folder) as project:
        options = IngestOptions(labels_from_folders=True, split={"val": 0.3})
        ingest(project, [images], options=options)
        if kind == "probe":
            backbones = BackboneOptions(
                cache_dir=project.settings.cache_dir, project_root=project.root
            )
            embed_project(project, get_backbone("features", backbones), workers=0)
            config = TrainConfig(backbone="features")
        else:
            config = TrainConfig(
                method="finetune",
                arch=arch,
                weights="none",
                epochs=2,
                input_size=input_size,
                augment=False,
            )
        train_model(project, config)
    return folder


def request_png(seed: int = 1) -> bytes:
    """The 128 x 128 RGB PNG every request sends."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 30, size=(SIDE, SIDE, 3))
    pixels = np.clip(np.array(COLOURS["red"])[None, None, :] + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(project: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    """``lensloop serve`` (one process) or uvicorn ``--workers`` over the same app."""
    if workers == 1:
        command = [sys.executable, "-m", "lensloop", "serve", str(project), "--no-retrain"]
        command += ["--host", "127.0.0.1", "--port", str(port)]
    else:
        command = [sys.executable, "-m", "uvicorn", "bench_serve:make_app", "--factory"]
        command += ["--app-dir", str(Path(__file__).parent), "--host", "127.0.0.1"]
        command += ["--port", str(port), "--workers", str(workers), "--log-level", "warning"]
    env = dict(os.environ, BENCH_SERVE_PROJECT=str(project))
    return subprocess.Popen(command, env=env)


def make_app() -> Any:
    """The app ``lensloop serve`` builds, for uvicorn's ``--factory --workers`` (each worker
    opens the project itself)."""
    from lensloop.service import create_app

    project = Project.open(Path(os.environ["BENCH_SERVE_PROJECT"]))
    return create_app(project, retrain=False)


def wait_healthy(base: str, server: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode} before /health")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"no answer from {base}/health in {timeout_s:.0f} s")


async def load(
    base: str, endpoint: str, clients: int, warmup_s: float, duration_s: float, png: bytes
) -> tuple[list[float], list[str], float, dict[str, Any]]:
    """Run the clients; return counted latencies (s), errors, counted seconds, one answer."""
    latencies: list[float] = []
    errors: list[str] = []
    answer: dict[str, Any] = {}
    started = time.perf_counter()
    count_from = started + warmup_s
    stop_at = count_from + duration_s
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def one_client() -> None:
            while (sent := time.perf_counter()) < stop_at:
                try:
                    if endpoint == "health":
                        response = await client.get("/health")
                    else:
                        response = await client.post(
                            "/v1/predict", files={"file": ("x.png", png, "image/png")}
                        )
                    ok = response.status_code == 200
                    problem = f"{response.status_code} {response.text[:200]}"
                except httpx.HTTPError as exc:
                    ok, problem = False, f"{type(exc).__name__}: {exc}"
                done = time.perf_counter()
                if sent < count_from:
                    continue
                if ok:
                    latencies.append(done - sent)
                    if not answer:
                        answer.update(response.json())
                else:
                    errors.append(problem)

        await asyncio.gather(*(one_client() for _ in range(clients)))
    counted = time.perf_counter() - count_from
    return latencies, errors, counted, answer


def raw_request(host: str, endpoint: str, png: bytes) -> bytes:
    """The whole HTTP/1.1 request one client sends again and again, prepared once."""
    if endpoint == "health":
        return f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    boundary = "lensloopbench7d1e"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="x.png"\r\nContent-Type: image/png\r\n\r\n'
        ).encode()
        + png
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST /v1/predict HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def load_raw(
    base: str, endpoint: str, clients: int, warmup_s: float, duration_s: float, png: bytes
) -> tuple[list[float], list[str], float, dict[str, Any]]:
    """As :func:`load`, with asyncio streams: a client costs microseconds per request, so
    on a small machine the cores go to the server under test."""
    host, port = base.removeprefix("http://").split(":")
    request = raw_request(f"{host}:{port}", endpoint, png)
    latencies: list[float] = []
    errors: list[str] = []
    answer: dict[str, Any] = {}
    started = time.perf_counter()
    count_from = started + warmup_s
    stop_at = count_from + duration_s

    async def one_client() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while (sent := time.perf_counter()) < stop_at:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split()[1])
                length = next(
                    int(line.split(":", 1)[1])
                    for line in lines
                    if line.lower().startswith("content-length:")
                )
                body = await reader.readexactly(length)
                done = time.perf_counter()
                if sent < count_from:
                    continue
                if status == 200:
                    latencies.append(done - sent)
                    if not answer:
                        answer.update(json.loads(body))
                else:
                    errors.append(f"{status} {body[:200]!r}")
        finally:
            writer.close()

    await asyncio.gather(*(one_client() for _ in range(clients)))
    counted = time.perf_counter() - count_from
    return latencies, errors, counted, answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=20.0, help="counted seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="uncounted seconds first")
    parser.add_argument("--project", type=Path, help="reuse a project with a classifier")
    parser.add_argument("--work", type=Path, default=Path("bench/out/serve"))
    parser.add_argument("--model-kind", choices=["probe", "finetune"], default="probe")
    parser.add_argument(
        "--arch", choices=["efficientnet-lite0", "resnet18", "resnet50"], default="resnet18"
    )
    parser.add_argument("--input-size", type=int, default=SIDE, help="finetune input side")
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="raw: one keep-alive socket per client sending prepared bytes (cheap, so the "
        "server is measured, not the client); httpx: httpx.AsyncClient",
    )
    parser.add_argument("--workers", type=int, default=1, help="uvicorn processes")
    parser.add_argument("--target-p99-ms", type=float, default=200.0)
    parser.add_argument(
        "--endpoint",
        choices=["predict", "health"],
        default="predict",
        help="health: GET /health instead, the server and client stack alone",
    )
    args = parser.parse_args()

    project = args.project or make_project(args.work, args.model_kind, args.arch, args.input_size)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(project, port, args.workers)
    try:
        wait_healthy(base, server)
        run = load if args.client == "httpx" else load_raw
        latencies, errors, counted, answer = asyncio.run(
            run(base, args.endpoint, args.clients, args.warmup, args.duration, request_png())
        )
    finally:
        server.terminate()
        server.wait(10)

    with Project.open(project) as opened:
        from lensloop.train.registry import resolve_model

        served = resolve_model(opened, None)
        model_input = served.card.get("input", {})
        kind = ", ".join(
            f"{key} {model_input[key]}"
            for key in ("kind", "backbone", "arch")
            if key in model_input
        )
    ms = np.array(latencies) * 1e3 if latencies else np.array([np.nan])
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}")
    print(f"model: v{served.version}, {kind}")
    print(f"answer: {json.dumps(answer)[:200]}")
    print(
        f"\n{args.endpoint}: {args.clients} clients, {args.workers} server process(es), "
        f"{counted:.1f} s counted"
    )
    print("\n| req/s | p50 ms | p90 ms | p99 ms | max ms | requests | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {len(latencies) / counted:.1f} | {p50:.1f} | {p90:.1f} | {p99:.1f} | "
        f"{ms.max():.1f} | {len(latencies)} | {len(errors)} |"
    )
    for problem in sorted(set(errors))[:5]:
        print(f"error: {problem}")
    if errors or not latencies or p99 >= args.target_p99_ms:
        print(
            f"FAIL: p99 {p99:.1f} ms (target < {args.target_p99_ms:.0f} ms), {len(errors)} errors"
        )
        raise SystemExit(1)
    print(f"OK: p99 {p99:.1f} ms < {args.target_p99_ms:.0f} ms, no errors")


if __name__ == "__main__":
    main()
