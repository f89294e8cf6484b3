"""A small closed-loop HTTP/1.1 load generator for loopback (keep-alive, asyncio).

Each connection sends one prebuilt request, waits for the whole response, records the
latency, and sends the next, until the time is up: N connections = N requests in flight.
Written on raw streams so the client costs far less CPU than the servers it measures.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    requests: int
    failures: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")

    @property
    def p99(self) -> float:
        return self.percentile(99)


def build_request(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: keep-alive\r\n\r\n")
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            length = int(value.strip())
        elif key == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def _connection(host: str, port: int, request: bytes, stop_at: float,
                      measure_from: float, latencies: list[float], counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            started = time.perf_counter()
            if started >= stop_at:
                return
            writer.write(request)
            status = await _read_response(reader)
            ended = time.perf_counter()
            if started >= measure_from:
                latencies.append((ended - started) * 1000)
                counts[0] += 1
                if status != 200:
                    counts[1] += 1
    finally:
        writer.close()


async def _run(host: str, port: int, request: bytes, connections: int, seconds: float,
               warmup: float) -> Result:
    begin = time.perf_counter()
    measure_from = begin + warmup
    stop_at = measure_from + seconds
    latencies: list[float] = []
    counts = [0, 0]
    await asyncio.gather(*(
        _connection(host, port, request, stop_at, measure_from, latencies, counts)
        for _ in range(connections)))
    elapsed = min(time.perf_counter(), stop_at) - measure_from
    return Result(requests=counts[0], failures=counts[1], seconds=max(elapsed, 1e-9),
                  latencies_ms=latencies)


def load(*, host: str, port: int, path: str, body: bytes, connections: int,
         seconds: float, warmup: float = 0.5) -> Result:
    """Send `body` to `path` from `connections` connections for `seconds` (after warm-up)."""
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    request = build_request(host, port, path, body)
    return runner(_run(host, port, request, connections, seconds, warmup))
