"""
The command conformance cases (tests/data/command_conformance.json): the
replies every host of docs/commands.md must give, and the matcher for them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

CASES_PATH = Path(__file__).resolve().parent / "data" / "command_conformance.json"
_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")


def load() -> dict[str, Any]:
    return json.loads(CASES_PATH.read_text(encoding="utf-8"))


def mismatch(expected: Any, actual: Any, where: str = "reply") -> str | None:
    """
    Where C{actual} differs from C{expected} (with placeholders), or C{None}.
    """
    if isinstance(expected, str) and expected.startswith("<") and expected.endswith(">"):
        checks: dict[str, Callable[[Any], bool]] = {
            "<any>": lambda v: True,
            "<string>": lambda v: isinstance(v, str),
            "<int>": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer(),
            "<iso8601>": lambda v: isinstance(v, str) and _ISO.match(v) is not None,
        }
        return None if checks[expected](actual) else f"{where}: {actual!r} is not {expected}"
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or set(expected) != set(actual):
            return f"{where}: expected keys {sorted(expected)}, got {actual!r}"
        for key in expected:
            problem = mismatch(expected[key], actual[key], f"{where}.{key}")
            if problem:
                return problem
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(expected) != len(actual):
            return f"{where}: expected {expected!r}, got {actual!r}"
        for index, (e, a) in enumerate(zip(expected, actual)):
            problem = mismatch(e, a, f"{where}[{index}]")
            if problem:
                return problem
        return None
    if isinstance(expected, bool) or isinstance(actual, bool):
        # true is not 1 in JSON.
        same = expected is actual
    else:
        same = expected == actual
    return None if same else f"{where}: expected {expected!r}, got {actual!r}"


def run(send: Callable[[dict[str, Any]], dict[str, Any]]) -> list[str]:
    """
    Run every case through C{send} (request object -> reply object).

    @return: the failures, one line each.
    """
    failures = []
    for case in load()["cases"]:
        request = case["request"]
        reply = send(request)
        if reply.get("id") != request["id"]:
            failures.append(f"{case['name']}: id {reply.get('id')!r} != {request['id']}")
            continue
        reply = {k: v for k, v in reply.items() if k != "id"}
        problem = mismatch(case["reply"], reply)
        if problem:
            failures.append(f"{case['name']}: {problem}")
    return failures
