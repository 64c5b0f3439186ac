"""
The example Worker's routing in workerd: one singleton container by
default; with CONTAINERFLARE_INSTANCES, N containers chosen by the routing
key header (stable) or at random.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e._worker import Stack, http, run_worker_stack


def fnv1a(text: str) -> int:
    """
    The Worker's hash of a routing key (worker/routing.js).
    """
    h = 0x811C9DC5
    for byte in text.encode("utf-8"):
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


@pytest.fixture(scope="module")
def spread(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with run_worker_stack(
        tmp_path_factory.mktemp("spread"),
        {"CONTAINERFLARE_INSTANCES": "4", "CONTAINERFLARE_ROUTING_KEY": "x-session"},
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with run_worker_stack(tmp_path_factory.mktemp("single"), {"CONTAINERFLARE_INSTANCES": "not a number"}) as stack:
        yield stack


def instance(stack: Stack, **headers: str) -> str:
    status, response_headers, body = http("GET", stack.url + "/healthz", headers=headers)
    assert status == 200, body
    return response_headers["x-harness-instance"]


def test_singleton_by_default(single: Stack) -> None:
    # An unusable CONTAINERFLARE_INSTANCES falls back to the singleton (logged).
    ids = {instance(single, **{"x-session": f"s{i}"}) for i in range(6)}
    assert ids == {single.harness.state("_")["id"]}
    assert len(single.harness.state("_")["starts"]) == 1


def test_routing_key_picks_a_stable_instance(spread: Stack) -> None:
    ids = {}
    for i in range(12):
        session = f"user-{i}"
        first = instance(spread, **{"x-session": session})
        assert instance(spread, **{"x-session": session}) == first
        expected = spread.harness.state(f"instance-{fnv1a(session) % 4}")["id"]
        assert first == expected
        ids[session] = first
    assert len(set(ids.values())) > 1


def test_without_a_key_requests_spread_at_random(spread: Stack) -> None:
    names = {spread.harness.state(f"instance-{i}")["id"] for i in range(4)}
    seen = {instance(spread) for _ in range(24)}
    assert seen <= names
    # 24 uniform picks out of 4 all landing on one instance: probability 4 * 4**-24.
    assert len(seen) > 1
