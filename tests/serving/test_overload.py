"""A real `python -m serving` (uvicorn) under 16 MB bodies and under hundreds of clients.

The bodies: three at once of each format, each just under the 16 MiB body limit and
holding millions of tiny rows (`benchmarks/serving/limits.py`, which prints the seconds
each answer took), must each get a 4xx, while the server stays under 1 GiB resident
(its VmHWM from /proc) and keeps answering one-row `/predict` requests.

The clients: a few hundred, each on its own keep-alive connection, pausing about as long
as httpx keeps an idle connection (5 s) between requests, against a server whose queue
holds 8 (on the sklearn runtime, so that requests do queue): every request gets an HTTP
status (200, or 503 when the queue is full), none a dropped connection. With uvicorn's
default keep-alive of 5 s (`SERVING_KEEP_ALIVE_SECONDS=5`) some connections are reset.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.serving.limits import (
    attack,
    metrics_resident_mb,
    peak_mb,
    requests_by_format,
    save_demo_model,
    served,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

RESIDENT_BOUND_MB = 1024
CLIENTS = 200
ROUNDS = 3


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    return save_demo_model(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def server(demo_model: tuple[Path, dict[str, Any]],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    folder, _ = demo_model
    with served(folder, tmp_path_factory.mktemp("serving")) as running:
        yield running


def test_three_16_mb_bodies_of_each_format_get_4xx_in_bounded_memory(
        server: tuple[str, int], demo_model: tuple[Path, dict[str, Any]]) -> None:
    url, pid = server
    _, record = demo_model
    print(f"\nidle: {metrics_resident_mb(url):.0f} MB resident")
    for name, request in requests_by_format("demo", next(iter(record))).items():
        result = attack(url, pid, request, record)
        print(f"{name}: {result.statuses} in at most {max(result.seconds):.1f} s; "
              f"peak so far {result.peak_mb:.0f} MB; {result.predict_ok} one-row answers")
        assert all(isinstance(s, int) and 400 <= s < 500 for s in result.statuses), (
            name, result.statuses)
        assert result.predict_failed == [], (name, result.predict_failed)
        assert result.predict_ok > 0, f"/predict answered while {name} bodies were parsed"
    assert peak_mb(pid) < RESIDENT_BOUND_MB, (
        f"the server peaked at {peak_mb(pid):.0f} MB resident (bound {RESIDENT_BOUND_MB} MB)")


def test_hundreds_of_clients_get_a_status_and_no_dropped_connection(
        demo_model: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    folder, record = demo_model
    with served(folder, tmp_path, SERVING_QUEUE_MAX="8", SERVING_RUNTIME="sklearn") as (url, _):
        statuses, dropped = asyncio.run(clients(url, record))
    print(f"\n{CLIENTS} clients x {ROUNDS}: statuses {dict(statuses)}, dropped {dict(dropped)}")
    assert dropped == {}, f"connections dropped without an HTTP status: {dict(dropped)}"
    assert set(statuses) == {200, 503}, f"served, and refused with 503 when overloaded: {statuses}"
    assert sum(statuses.values()) == CLIENTS * ROUNDS


async def clients(url: str, record: dict[str, Any]
                  ) -> tuple[collections.Counter[int], collections.Counter[str]]:
    """Each client its own connection (httpx's defaults: idle connections kept 5 s)."""
    statuses: collections.Counter[int] = collections.Counter()
    dropped: collections.Counter[str] = collections.Counter()

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            for _ in range(ROUNDS):
                try:
                    answer = await http.post("/predict", json={"records": [record]})
                    statuses[answer.status_code] += 1
                except httpx.TransportError as err:
                    dropped[type(err).__name__] += 1
                await asyncio.sleep(random.uniform(4.8, 5.2))  # about httpx's keep-alive

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return statuses, dropped
