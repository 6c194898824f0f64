"""Hostile templates cost what benign ones cost: `/health` latency and the server's memory while
one client sends YAML alias bombs and substitution bombs (a run whose references would multiply a
200 KB payload), against the same load of benign templates and runs (the peer), in one
invocation. Prints one JSON line.

    python -m bench.hostile --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import aiohttp

from .common import KEEPALIVE, KEY, free_port, opscore_cmd, opscore_env, process, rss_mb

BOMB = """id: bomb{n}
version: "1"
tasks:
  - taskId: t
    parameters:
      a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
      b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
      c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
      d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
      e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
      f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
      g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""
BENIGN = """id: fine{n}
version: "1"
tasks:
  - taskId: t
    parameters:
      a: ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
      b: ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
      c: ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
      d: ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
"""
PAYLOAD = {"big": "x" * 200_000}


async def _load(url: str, seconds: float, hostile: bool) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {KEY}"}
    yaml_headers = {**headers, "Content-Type": "application/yaml"}
    async with aiohttp.ClientSession(
        headers=headers, connector=aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE)
    ) as http:
        refs = "${input.big}" * 500 if hostile else "${input.big}"
        multiply = {
            "id": "mult",
            "version": "1",
            "tasks": [{"taskId": "t", "parameters": {"x": refs}}],
        }
        await http.post(f"{url}/v1/opscore/workflows", json=multiply)
        stop = time.monotonic() + seconds
        answers: dict[int, int] = {}
        health: list[float] = []

        async def attacker() -> None:
            n = 0
            while time.monotonic() < stop:
                n += 1
                body = (BOMB if hostile else BENIGN).format(n=n)
                async with http.post(
                    f"{url}/v1/opscore/workflows", data=body, headers=yaml_headers
                ) as r:
                    answers[r.status] = answers.get(r.status, 0) + 1
                async with http.post(
                    f"{url}/v1/opscore/workflows/mult/runs", json={"initialPayload": PAYLOAD}
                ) as r:
                    answers[r.status] = answers.get(r.status, 0) + 1

        async def prober() -> None:
            async with aiohttp.ClientSession() as own:
                while time.monotonic() < stop:
                    started = time.perf_counter()
                    async with own.get(f"{url}/health") as r:
                        await r.read()
                    health.append((time.perf_counter() - started) * 1000)
                    await asyncio.sleep(0.01)

        await asyncio.gather(attacker(), prober())
    health.sort()
    return {
        "answers": answers,  # type: ignore[dict-item]
        "health_p50_ms": statistics.median(health),
        "health_p99_ms": health[int(len(health) * 0.99) - 1],
    }


def _run(seconds: float, hostile: bool) -> dict[str, object]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = opscore_env(port, OPSCORE_ACCESS_LOG="false", OPSCORE_LOG_LEVEL="WARNING")
    with process(opscore_cmd(), env=env, ready_url=f"{url}/health") as proc:
        before = rss_mb(proc.pid)
        result: dict[str, object] = dict(asyncio.run(_load(url, seconds, hostile)))
        result["rss_mb_before"] = before
        result["rss_mb_after"] = rss_mb(proc.pid)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    hostile = _run(args.seconds, True)
    benign = _run(args.seconds, False)
    ratio = float(hostile["health_p99_ms"]) / float(benign["health_p99_ms"])  # type: ignore[arg-type]
    print(
        json.dumps(
            {
                "seconds": args.seconds,
                "hostile": hostile,
                "benign": benign,
                "health_p99_ratio": ratio,
            }
        )
    )


if __name__ == "__main__":
    main()
