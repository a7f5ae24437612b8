"""Many people chatting at once: time to first token through the app (gradio_client) vs straight from the server.

The app is the real one (engine, SQLite store, tools, Gradio queue), in a process of its own as in production, with
the TGI backend pointed at the fake TGI server, which streams each reply with a fixed delay per token. The baseline,
in the same run, reads the same replies straight from the fake server's /generate_stream with one HTTP client per chat.
A last pass, without a clock, counts how many chats' model requests the app keeps open at once: the fake server holds
every reply until all are open (`FakeTGI.hold_streams`).

    .venv/bin/python -m bench.bench_app_concurrency [--chats 50] [--token-delay 0.02]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from gradio_client import Client

from backend.engine import Engine
from backend.models.tgi import TGIBackend
from backend.storage.store import Store
from backend.tools import SupportDesk, build_registry
from tests.fake_tgi import FakeTGI, Reply, unused_port
from ui.app import build_app, launch

REPLY = " ".join(["The order A1001 left our warehouse on Monday and should arrive soon."] * 4)


def through_app(url: str, chats: int, app_pid: int) -> tuple[list[tuple[float, float]], float]:
    """Per chat, seconds to the first visible assistant text and to the reply's end, all chats started together.

    Also the CPU seconds the app process spent from the moment every client was connected to the last reply's end.
    """
    cpu_at_start: list[float] = []
    start = threading.Barrier(chats, action=lambda: cpu_at_start.append(_cpu_seconds(app_pid)))

    def one(index: int) -> tuple[float, float]:
        # gradio_client builds a certificate store (~25 ms of CPU) for every request it makes unless told not to
        # verify; on plain HTTP over loopback nothing is verified anyway, and 50 clients doing it took the CPU
        # from the app under test (p50 3.0 s against 0.7 s without).
        client = Client(url, verbose=False, ssl_verify=False)
        # A person opens the page before typing: Gradio builds a session's state then (tens of ms of CPU in a
        # large app), not when the message is sent. An empty message does the same here and changes nothing.
        client.predict("", None, api_name="/send")
        start.wait()
        began = time.perf_counter()
        job = client.submit(f"Hello from chat {index}", None, api_name="/send")  # no conversation yet: a new one
        first = None
        while not job.done():
            if first is None and any(_has_answer(output) for output in job.outputs()):
                first = time.perf_counter() - began
            time.sleep(0.02)
        ended = time.perf_counter() - began
        return (ended if first is None else first), ended

    with ThreadPoolExecutor(chats) as pool:
        times = list(pool.map(one, range(chats)))
    return times, _cpu_seconds(app_pid) - cpu_at_start[0]


def open_at_once(fake: FakeTGI, url: str, chats: int, app_pid: int) -> int:
    """The most chats' model requests the app had open at once, every reply held until all `chats` were open."""
    fake.add(*(Reply(text=REPLY) for _ in range(chats)))
    with fake.hold_streams(chats, timeout_s=60) as hold:
        through_app(url, chats, app_pid)
    return hold.most_held


def _has_answer(output: Any) -> bool:
    chat = output[0] if isinstance(output, tuple) else output  # one output: the value itself
    return any(isinstance(m, dict) and m.get("role") == "assistant" and m.get("content") for m in chat or [])


def from_server(url: str, chats: int) -> list[float]:
    """Seconds to the first token read straight from /generate_stream, per chat, all together."""
    start = threading.Barrier(chats)

    def one(index: int) -> float:
        with httpx.Client(timeout=60) as client:
            start.wait()
            began = time.perf_counter()
            body = {"inputs": f"[INST] Hello from chat {index} [/INST]\n\n", "parameters": {"max_new_tokens": 200}}
            with client.stream("POST", f"{url}/generate_stream", json=body) as response:
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        return time.perf_counter() - began
        return time.perf_counter() - began

    with ThreadPoolExecutor(chats) as pool:
        return list(pool.map(one, range(chats)))


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from Linux's /proc (NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    return f"p50 {statistics.median(ordered) * 1000:7.1f} ms   p95 {ordered[int(len(ordered) * 0.95) - 1] * 1000:7.1f} ms"


def serve(tgi_url: str, port: int) -> None:
    """The app under test, in its own process: the clients' threads must not compete with it for the GIL."""
    with tempfile.TemporaryDirectory() as folder:
        engine = Engine(
            store=Store(f"sqlite:///{Path(folder) / 'bench.db'}"),
            backend=TGIBackend(tgi_url, call_mode="parse", retries=0),
            registry=build_registry(support_desk=SupportDesk(Path(folder)), examples=False),
        )
        launch(build_app(engine=engine), server_name="127.0.0.1", server_port=port, quiet=True)


def start_app(tgi_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = unused_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_app_concurrency", "--serve", tgi_url, "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise SystemExit("the app did not start")
        time.sleep(0.2)
    process.kill()
    raise SystemExit("the app did not answer within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=50)
    parser.add_argument("--token-delay", type=float, default=0.02)
    parser.add_argument("--serve", metavar="TGI_URL", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return

    with FakeTGI() as fake:
        process, url = start_app(fake.url)
        try:
            print(f"time to first token, {args.token_delay * 1000:.0f} ms per token from the fake TGI server")
            for chats in (1, args.chats):
                fake.add(*(Reply(text=REPLY, token_delay=args.token_delay) for _ in range(chats)))
                direct = from_server(fake.url, chats)
                fake.add(*(Reply(text=REPLY, token_delay=args.token_delay) for _ in range(chats)))
                times, app_cpu = through_app(url, chats, process.pid)
                firsts, ends = zip(*times, strict=True)
                ratio = statistics.median(firsts) / statistics.median(direct)
                # Chats that waited on each other: their first words came only after some other chat had ended.
                waited = sum(first > min(ends) for first in firsts)
                print(
                    f"{chats:3d} chats  server: {summary(direct)}   app: {summary(list(firsts))}   "
                    f"app/server p50 x{ratio:.1f}   first words after another chat ended: {waited}   "
                    f"app CPU {app_cpu * 1000 / chats:.0f} ms per chat"
                )
            held = open_at_once(fake, url, args.chats, process.pid)
            print(f"{args.chats:3d} chats  model requests open at once: {held} of {args.chats}")
        finally:
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
