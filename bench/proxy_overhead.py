"""What the embedded proxy costs: round trip and bulk throughput, direct vs through it.

One run, one local echo server (its own process), measured directly and through the
embedded proxy server (its own process), with no toxic and with a ``noop`` toxic (which
takes the toxic pipeline instead of the fast path). Every figure is printed next to the
direct baseline of the same run.

    .venv/bin/python bench/proxy_overhead.py [--samples 2000] [--megabytes 200]

Targets (issue 3): added p50 round trip under 0.3 ms; throughput at least 10% of direct.
Toxiproxy's FAQ: under 0.1 ms added, about 1000 MB/s.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness._wait import wait_for
from harness.faults.network import Stream, ToxicSpec, ToxiproxyClient
from harness.proxy import start_proxy_server

BUFFER = 256 * 1024


def serve_echo(port_file: str) -> None:
    """Child process: a threaded echo server on 127.0.0.1; writes its port to a file."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    Path(port_file).write_text(str(listener.getsockname()[1]))

    def handle(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray(BUFFER)
        view = memoryview(buf)
        with conn:
            while n := conn.recv_into(buf):
                conn.sendall(view[:n])

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


@contextlib.contextmanager
def echo_process(tmp: Path) -> Iterator[int]:
    port_file = tmp / "echo.port"
    port_file.unlink(missing_ok=True)
    child = subprocess.Popen([sys.executable, __file__, "--serve-echo", str(port_file)])
    try:
        text = wait_for(
            lambda: port_file.exists() and port_file.read_text(),
            what="the echo server's port",
            timeout=10,
        )
        yield int(text)
    finally:
        child.terminate()
        child.wait(5)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def round_trips(port: int, samples: int, size: int = 64) -> list[float]:
    payload = b"x" * size
    with _connect(port) as sock:
        for _ in range(200):  # warm up
            sock.sendall(payload)
            sock.recv(size, socket.MSG_WAITALL)
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            sock.sendall(payload)
            got = sock.recv(size, socket.MSG_WAITALL)
            times.append(time.perf_counter() - start)
            assert len(got) == size
    return times


def throughput(port: int, megabytes: int) -> float:
    """MB/s (1 MB = 10^6 bytes) of data echoed back, sender and receiver concurrently."""
    total = megabytes * 1_000_000
    block = b"\0" * BUFFER
    with _connect(port) as sock:

        def send() -> None:
            left = total
            while left > 0:
                n = min(left, BUFFER)
                sock.sendall(block[:n])
                left -= n

        buf = bytearray(BUFFER)
        start = time.perf_counter()
        sender = threading.Thread(target=send)
        sender.start()
        got = 0
        while got < total:
            n = sock.recv_into(buf)
            if not n:
                raise ConnectionError(f"closed after {got} of {total} bytes")
            got += n
        elapsed = time.perf_counter() - start
        sender.join()
    return total / elapsed / 1e6


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000, help="round trips per path")
    parser.add_argument("--megabytes", type=int, default=200, help="bulk bytes per path")
    parser.add_argument("--serve-echo", metavar="PORT_FILE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_echo:
        serve_echo(args.serve_echo)
        return 0

    with (
        tempfile.TemporaryDirectory(prefix="proxy-overhead-") as tmp,
        echo_process(Path(tmp)) as echo_port,
        start_proxy_server(seed=0) as server,
    ):
        client = ToxiproxyClient(server.api_url)
        plain = client.create_proxy("bench_plain", f"127.0.0.1:{echo_port}")
        noop = client.create_proxy("bench_noop", f"127.0.0.1:{echo_port}")
        client.add_toxic(noop.name, ToxicSpec.noop())
        client.add_toxic(noop.name, ToxicSpec.noop(stream=Stream.UPSTREAM))
        paths = {
            "direct": echo_port,
            "proxy": plain.listen_port,
            "proxy+noop": noop.listen_port,
        }
        rtt = {name: round_trips(port, args.samples) for name, port in paths.items()}
        bulk = {name: throughput(port, args.megabytes) for name, port in paths.items()}

    print(
        f"embedded proxy overhead ({args.samples} round trips of 64 B, "
        f"{args.megabytes} MB echoed per path; python {sys.version.split()[0]}, plain asyncio)"
    )
    base50, base99 = percentile(rtt["direct"], 0.5), percentile(rtt["direct"], 0.99)
    print(
        f"{'path':<12} {'p50 us':>9} {'p99 us':>9} {'mean us':>9} {'p50 x':>7} "
        f"{'added p50 us':>13} {'MB/s':>9} {'vs direct':>10}"
    )
    for name in paths:
        p50, p99 = percentile(rtt[name], 0.5), percentile(rtt[name], 0.99)
        mean = statistics.fmean(rtt[name])
        print(
            f"{name:<12} {p50 * 1e6:9.1f} {p99 * 1e6:9.1f} {mean * 1e6:9.1f} "
            f"{p50 / base50:7.2f} {(p50 - base50) * 1e6:13.1f} {bulk[name]:9.1f} "
            f"{bulk[name] / bulk['direct']:9.1%}"
        )
    added_ms = (percentile(rtt["proxy"], 0.5) - base50) * 1e3
    ratio = bulk["proxy"] / bulk["direct"]
    print(f"p99 through proxy / direct: {percentile(rtt['proxy'], 0.99) / base99:.2f}x")
    print(
        f"target added p50 < 0.3 ms: {added_ms:.3f} ms -> {'met' if added_ms < 0.3 else 'MISSED'}"
    )
    print(
        f"target throughput >= 10% of direct: {ratio:.1%} -> {'met' if ratio >= 0.10 else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
