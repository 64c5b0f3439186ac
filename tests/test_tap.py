"""
Tests for the twistd plugin's options (L{containerflare._tap}).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from twisted.python.usage import UsageError
from twisted.web.resource import IResource

from containerflare._environ import ENVIRONMENT_VARIABLES
from containerflare._service import ContainerService
from containerflare._tap import Options, makeService

from ._process import PLATFORM_VARS

APPS = Path(__file__).parent / "apps"


@pytest.fixture(autouse=True)
def _in_apps_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(APPS)
    for name in PLATFORM_VARS:
        monkeypatch.delenv(name, raising=False)
    # Options.postOptions loads .env into os.environ: keep the test's clean.
    monkeypatch.setattr("os.environ", dict(__import__("os").environ))


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


@pytest.mark.parametrize(
    "spec",
    ["runtime_app:app", "runtime_app.app", "runtime_app:plain", "runtime_app.factory", "runtime_app:_Plain"],
)
def test_app_forms(spec: str) -> None:
    options = parse("--app", spec)
    assert IResource.providedBy(options["resource"])


def test_defaults_and_overrides() -> None:
    options = parse("--app", "runtime_app:app")
    assert options["grace"] == 8.0
    assert options["endpoint"] is None
    assert options["command-endpoint"] is None
    assert options["no-access-log"] == 0
    options = parse(
        "--app", "runtime_app:app", "--endpoint", "tcp:9999", "--grace", "2.5",
        "--command-endpoint", "disabled", "--no-access-log",
    )
    service = makeService(options)
    assert isinstance(service, ContainerService)
    assert service.endpoint == "tcp:9999"
    assert service.grace == 2.5
    assert service.command_endpoint == "disabled"
    assert service.access_log is False


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "--app is required"),
        (("--app", "nosuchmodule_xyz:app"), "no module named 'nosuchmodule_xyz'"),
        (("--app", "runtime_app:nothing"), "has no attribute 'nothing'"),
        (("--app", "runtime_app:not_an_app"), "is a builtins.int"),
        (("--app", "runtime_app"), "expected MODULE:NAME or MODULE.NAME"),
        (("--app", ":app"), "expected MODULE:NAME or MODULE.NAME"),
        (("--app", "runtime_app:app", "--grace", "-1"), "--grace must not be negative"),
        (("--app", "runtime_app:app", "--endpoint", "nonsense:1"), "--endpoint 'nonsense:1'"),
    ],
)
def test_usage_errors(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse(*argv)
    assert message in str(info.value)


def test_broken_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_app_mod.py").write_text("import nosuchdependency_abc\n")
    (tmp_path / "raising_app_mod.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / "needs_args_mod.py").write_text("def app(x):\n    return x\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UsageError, match="importing 'broken_app_mod' failed: ModuleNotFoundError"):
        parse("--app", "broken_app_mod:app")
    with pytest.raises(UsageError, match="RuntimeError: boom at import"):
        parse("--app", "raising_app_mod:app")
    with pytest.raises(UsageError, match="must take no arguments"):
        parse("--app", "needs_args_mod:app")
    for name in ("broken_app_mod", "raising_app_mod", "needs_args_mod"):
        sys.modules.pop(name, None)


def test_invalid_environment_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(UsageError, match="PORT='eighty'"):
        parse("--app", "runtime_app:app")
    monkeypatch.setenv("PORT", "8080")
    monkeypatch.setenv("CF_CONTAINER_ADDR", "not-an-ip")
    with pytest.raises(UsageError, match="CF_CONTAINER_ADDR='not-an-ip'"):
        parse("--app", "runtime_app:app")


def test_dotenv_in_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("PORT=7123\nK_SERVICE=dot\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(APPS))
    monkeypatch.setenv("PORT", "6000")
    options = parse("--app", "runtime_app:app")
    assert options["config"].listen_port == 7123
    assert options["config"].platform.name == "cloud_run"


def test_help_documents_options_and_environment() -> None:
    text = str(Options())
    for option in ("--app", "--endpoint", "--command-endpoint", "--grace", "--no-access-log"):
        assert option in text
    for name, _ in ENVIRONMENT_VARIABLES:
        assert name in text
