"""A small keep-alive HTTP/1.1 load generator, run in its own process so it never shares
the server's interpreter.  Each connection sends one request at a time and waits for the
whole response; latency is measured per request."""
from __future__ import annotations

import asyncio
import json
import time


async def _connection(host, port, requests, deadline, latencies, errors):
    reader, writer = await asyncio.open_connection(host, port)
    index = 0
    try:
        while time.perf_counter() < deadline:
            payload = requests[index % len(requests)]
            index += 1
            started = time.perf_counter()
            writer.write(payload)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if status >= 400:
                errors.append(status)
    finally:
        writer.close()


def build_request(method: str, path: str, token: str | None = None, body=None, *,
                  headers: dict | None = None) -> bytes:
    data = b"" if body is None else json.dumps(body).encode()
    lines = [f"{method} {path} HTTP/1.1", "Host: bench", "Connection: keep-alive",
             f"Content-Length: {len(data)}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    if body is not None:
        lines.append("Content-Type: application/json")
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def run(host: str, port: int, per_connection: list[list[bytes]], seconds: float) -> dict:
    """Drive one connection per entry of ``per_connection`` for ``seconds``."""
    latencies: list[float] = []
    errors: list[int] = []

    async def main():
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*[_connection(host, port, requests, deadline, latencies, errors)
                               for requests in per_connection])

    started = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - started
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(len(latencies) * q))] * 1000 if latencies else 0.0
    return {"rps": len(latencies) / elapsed, "p50": pick(0.50), "p99": pick(0.99), "errors": len(errors),
            "first_error": errors[0] if errors else None, "requests": len(latencies), "seconds": elapsed,
            "latencies": latencies}


def combine(slices: list[dict]) -> dict:
    """One figure from several slices of the same scenario: requests over time, pooled latencies."""
    latencies = sorted(x for s in slices for x in s["latencies"])
    pick = lambda q: latencies[min(len(latencies) - 1, int(len(latencies) * q))] * 1000 if latencies else 0.0
    errors = [s["first_error"] for s in slices if s["first_error"]]
    return {"rps": sum(s["requests"] for s in slices) / sum(s["seconds"] for s in slices),
            "p50": pick(0.50), "p99": pick(0.99), "errors": sum(s["errors"] for s in slices),
            "first_error": errors[0] if errors else None}
