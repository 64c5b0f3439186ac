"""
The collector is paused while C{twistd containerflare} imports the app (a
start-up cost, see docs/benchmarks.md) and always turned back on.
"""

from __future__ import annotations

import gc
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.python import usage
from twisted.web.resource import Resource

from containerflare._tap import Options


@pytest.fixture
def app_module(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, bool]]:
    """
    A module C{cf_gc_app} whose C{app()} records whether the collector ran.
    """
    seen: dict[str, bool] = {}
    module = types.ModuleType("cf_gc_app")

    def app() -> Resource:
        seen["enabled_while_loading"] = gc.isenabled()
        return Resource()

    module.app = app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cf_gc_app", module)
    monkeypatch.chdir(tmp_path)  # no stray .env
    yield seen


def test_paused_while_loading_then_restored(app_module: dict[str, bool]) -> None:
    assert gc.isenabled()
    options = Options()
    options.parseOptions(["--app", "cf_gc_app:app"])
    assert app_module == {"enabled_while_loading": False}
    assert gc.isenabled()


def test_restored_when_the_app_fails_to_load(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert gc.isenabled()
    with pytest.raises(usage.UsageError):
        Options().parseOptions(["--app", "cf_gc_no_such_module:app"])
    assert gc.isenabled()


def test_left_off_when_it_was_off(app_module: dict[str, bool]) -> None:
    gc.disable()
    try:
        Options().parseOptions(["--app", "cf_gc_app:app"])
        assert not gc.isenabled()
    finally:
        gc.enable()
