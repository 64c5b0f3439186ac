"""
The command conformance cases of docs/commands.md §7
(tests/data/command_conformance.json) against the example Worker's
dispatcher, in workerd, with Miniflare's KV, D1, R2 and Queues: the same
file tests/test_host.py runs against the reference host.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests._conformance import load, run
from tests.e2e._worker import Stack, http, http_json, run_worker_stack, wrangler_vars


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """
    A fresh Worker (empty bindings) whose container has started, so that
    its command host is intercepted.
    """
    with run_worker_stack(tmp_path_factory.mktemp("conformance")) as stack:
        assert http("GET", stack.url + "/healthz")[0] == 200
        yield stack


def test_allowlist_is_the_conformance_one() -> None:
    allowed = wrangler_vars()["CONTAINERFLARE_ALLOWED_BINDINGS"].replace(" ", "").split(",")
    assert sorted(allowed) == sorted(load()["allow"])


def test_conformance_cases_in_workerd(fresh: Stack) -> None:
    def send(request: dict[str, Any]) -> dict[str, Any]:
        status, reply = http_json("POST", fresh.harness.bridge(), request)
        assert status == 200, reply
        return reply  # type: ignore[no-any-return]

    assert run(send) == []
    # The cases ran in the Worker, not somewhere else.
    _, info = http_json("POST", fresh.harness.bridge(), {"id": 1, "command": "host.info"})
    assert info["payload"]["host"] == "cloudflare-worker"
    assert json.dumps(info["payload"]["commands"]).count("queue.pull") == 0
