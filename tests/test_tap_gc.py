"""
The collector is paused while C{twistd containerflare} imports the app (a
start-up cost, see docs/benchmarks.md) and always turned back on; once the
service is ready, the start-up heap is frozen out of its reach (unless
C{--no-gc-freeze}), checked here in real twistd processes too.
"""

from __future__ import annotations

import gc
import json
import sys
import types
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.python import usage
from twisted.web.resource import Resource

from containerflare._tap import Options, makeService
from tests._process import run_twistd

APPS = Path(__file__).parent / "apps"


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


def test_make_service_freezes_unless_told_not_to(app_module: dict[str, bool]) -> None:
    options = Options()
    options.parseOptions(["--app", "cf_gc_app:app"])
    assert makeService(options).freeze_heap is gc.freeze
    options = Options()
    options.parseOptions(["--app", "cf_gc_app:app", "--no-gc-freeze"])
    assert makeService(options).freeze_heap is None


def _frozen(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/gc", timeout=30) as response:
        return int(json.loads(response.read())["frozen"])


@pytest.mark.parametrize(("args", "frozen"), [((), True), (("--no-gc-freeze",), False)])
def test_twistd_freezes_the_startup_heap(
    tmp_path: Path, args: tuple[str, ...], frozen: bool
) -> None:
    with run_twistd("runtime_app:app", cwd=APPS, args=args, tmp_path=tmp_path) as child:
        count = _frozen(child.port)
    # The start-up heap is tens of thousands of objects (Twisted, Klein, the app).
    if frozen:
        assert count > 10_000, count
    else:
        assert count == 0, count
