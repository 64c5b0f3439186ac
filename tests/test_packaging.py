"""
Packaging: the wheel carries the twistd plugin where Twisted looks for it,
and twistd finds the plugin from any working directory.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from ._process import TWISTD, clean_environ

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contents(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("containerflare-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted/plugins/containerflare_plugin.py" in names
    # An __init__.py there would shadow Twisted's own packages.
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    assert "containerflare/py.typed" in names
    assert "containerflare/command/__init__.py" in names
    assert not any(n.startswith(("tests/", "examples/", "bench/")) for n in names)


def test_source_tree_has_no_init_in_plugin_dirs() -> None:
    assert not (ROOT / "twisted" / "__init__.py").exists()
    assert not (ROOT / "twisted" / "plugins" / "__init__.py").exists()
    text = (ROOT / "twisted" / "plugins" / "containerflare_plugin.py").read_text()
    assert "import klein" not in text and "reactor" not in text


def test_twistd_lists_the_plugin(tmp_path: Path) -> None:
    result = subprocess.run(
        [*TWISTD, "--help"], cwd=tmp_path, env=clean_environ(), capture_output=True,
        text=True, timeout=60,
    )
    assert result.returncode == 0
    assert "containerflare" in result.stdout


def test_plugin_load_does_not_install_a_reactor() -> None:
    code = (
        "import sys\n"
        "from twisted.plugin import getPlugins\n"
        "from twisted.application.service import IServiceMaker\n"
        "from twisted import plugins\n"
        "names = [p.tapname for p in getPlugins(IServiceMaker, plugins)]\n"
        "assert 'containerflare' in names, names\n"
        "print('klein' in sys.modules, 'twisted.internet.reactor' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=clean_environ(), capture_output=True, text=True,
        timeout=60, check=True,
    )
    assert result.stdout.split() == ["False", "False"]
