"""
Every Python sample in the documentation runs, so the docs cannot rot.

Conventions (also described in CONTRIBUTING.md):

    - Each C{```python} block of C{README.md}, C{CONTRIBUTING.md},
      C{examples/basic/README.md} and C{docs/*.md} is executed, in order, in one namespace per file, in a
      fresh temporary working directory.
    - A block whose first line is a comment naming a Python file
      (C{# app.py}) is also written to that file, so that later blocks can
      import it (C{from app import app}).
    - Test functions (C{def test_...():} with no arguments) and trial or
      unittest C{TestCase} classes that a block defines are then run, as
      pytest or trial would, so a testing guide's samples are checked by
      running them.
    - A block made of C{>>>} lines is run as a doctest: its outputs are
      checked.
    - A block that cannot run alone (an illustrative fragment) is preceded by
      the line C{<!-- doc-test: fragment -->}; it is only compiled, so its
      syntax is still checked.  Use it sparingly.

Relative links between the pages must point at files that exist.
"""

from __future__ import annotations

import doctest
import inspect
import re
import sys
import unittest
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

ROOT = Path(__file__).resolve().parent.parent

FRAGMENT_MARK = "<!-- doc-test: fragment -->"
_FENCE = re.compile(r"^(\s*)```\s*([A-Za-z0-9_+-]*)\s*$")
_FILE_COMMENT = re.compile(r"^#\s*([A-Za-z_][A-Za-z0-9_/]*\.py)\s*(?:\(.*\))?$")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def doc_files() -> list[Path]:
    """
    The pages whose samples are tested.
    """
    files = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "examples" / "basic" / "README.md"]
    files.extend(sorted((ROOT / "docs").glob("*.md")))
    return [f for f in files if f.is_file()]


@attrs.frozen
class Block:
    """
    One fenced code block.
    """

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    source: str
    fragment: bool

    @property
    def where(self) -> str:
        try:
            name = str(self.path.relative_to(ROOT))
        except ValueError:
            name = str(self.path)
        return f"{name}:{self.line}"


def code_blocks(path: Path) -> Iterator[Block]:
    """
    The fenced code blocks of a Markdown file, with their language.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    previous = ""
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            if lines[i].strip():
                previous = lines[i].strip()
            i += 1
            continue
        indent, language = match.group(1), match.group(2).lower()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            line = lines[i]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            i += 1
        i += 1
        yield Block(
            path=path,
            line=start + 1,
            language=language,
            source="\n".join(body) + "\n",
            fragment=previous == FRAGMENT_MARK,
        )
        previous = ""


def python_blocks(path: Path) -> list[Block]:
    return [b for b in code_blocks(path) if b.language in ("python", "py", "pycon")]


def run_block(block: Block, namespace: dict[str, Any], workdir: Path) -> None:
    """
    Run one block in C{namespace} (or only compile it if it is a fragment).
    """
    if block.fragment:
        compile(block.source, block.where, "exec")
        return
    if block.source.lstrip().startswith(">>>"):
        parser = doctest.DocTestParser()
        test = parser.get_doctest(block.source, namespace, block.where, block.where, block.line)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        out: list[str] = []
        runner.run(test, out=out.append, clear_globs=False)
        assert runner.failures == 0, f"doctest failed at {block.where}:\n" + "".join(out)
        return
    first = block.source.lstrip().splitlines()[0] if block.source.strip() else ""
    named = _FILE_COMMENT.match(first)
    if named is not None:
        target = workdir / named.group(1)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.source, encoding="utf-8")
    before = dict(namespace)
    code = compile(block.source, block.where, "exec")
    exec(code, namespace)
    run_defined_tests(block, namespace, before)


def run_defined_tests(block: Block, namespace: dict[str, Any], before: dict[str, Any]) -> int:
    """
    Run the test functions and TestCase classes C{block} defined.

    @return: how many tests ran.
    """
    ran = 0
    here = namespace.get("__name__")
    for name, value in list(namespace.items()):
        if before.get(name) is value or getattr(value, "__module__", None) != here:
            continue  # not defined by this block (imported, or seen before)
        if name.startswith("test") and inspect.isfunction(value):
            if inspect.signature(value).parameters:
                continue  # takes fixtures: not runnable alone
            result = value()
            if inspect.isawaitable(result):
                raise AssertionError(f"{block.where}: {name} is async; samples must be synchronous")
            ran += 1
        elif isinstance(value, type) and issubclass(value, unittest.TestCase):
            suite = unittest.defaultTestLoader.loadTestsFromTestCase(value)
            outcome = unittest.TestResult()
            suite.run(outcome)
            problems = outcome.errors + outcome.failures
            assert not problems, f"{block.where}: {name} failed:\n" + "\n".join(
                text for _, text in problems
            )
            ran += outcome.testsRun
    return ran


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """
    A fresh working directory on C{sys.path}; modules the samples wrote there
    are forgotten afterwards.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    try:
        yield tmp_path
    finally:
        for name in set(sys.modules) - before:
            module = sys.modules.get(name)
            origin = getattr(module, "__file__", None) or ""
            if origin.startswith(str(tmp_path)):
                del sys.modules[name]


@pytest.mark.parametrize(
    "path", doc_files(), ids=lambda p: str(p.relative_to(ROOT))
)
def test_python_samples_run(path: Path, sandbox: Path) -> None:
    """
    Every Python block of the page runs (fragments compile).
    """
    namespace: dict[str, Any] = {"__name__": f"doc_{path.stem}"}
    for block in python_blocks(path):
        try:
            run_block(block, namespace, sandbox)
        except BaseException as e:
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            raise AssertionError(f"the sample at {block.where} failed: {type(e).__name__}: {e}") from e


@pytest.mark.parametrize(
    "path", doc_files(), ids=lambda p: str(p.relative_to(ROOT))
)
def test_relative_links_resolve(path: Path) -> None:
    """
    Links to other files of the repository point at files that exist.
    """
    text = path.read_text(encoding="utf-8")
    missing = []
    for target in _LINK.findall(text):
        if "://" in target or target.startswith(("#", "mailto:")):
            continue
        file_part = target.split("#", 1)[0]
        if not file_part:
            continue
        if not (path.parent / file_part).exists():
            missing.append(target)
    assert not missing, f"{path.relative_to(ROOT)} links to missing files: {missing}"


# -- the harness itself ------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "page.md"
    page.write_text(text, encoding="utf-8")
    return page


def test_harness_finds_blocks_and_fragments(tmp_path: Path) -> None:
    page = _write(
        tmp_path,
        "intro\n\n```python\nx = 1\n```\n\n<!-- doc-test: fragment -->\n```python\n"
        "await thing\n```\n\n```sh\nls\n```\n\n- item\n\n  ```python\n  y = 2\n  ```\n",
    )
    blocks = list(code_blocks(page))
    assert [(b.language, b.fragment) for b in blocks] == [
        ("python", False),
        ("python", True),
        ("sh", False),
        ("python", False),
    ]
    assert blocks[0].line == 3
    assert blocks[3].source == "y = 2\n"


def test_harness_runs_blocks_in_one_namespace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = _write(tmp_path, "```python\n# mod_a.py\nvalue = 41\n```\n```python\nfrom mod_a import value\nresult = value + 1\n```\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict[str, Any] = {}
    for block in python_blocks(page):
        run_block(block, namespace, tmp_path)
    sys.modules.pop("mod_a", None)
    assert namespace["result"] == 42
    assert (tmp_path / "mod_a.py").is_file()


def test_harness_reports_a_failing_block(tmp_path: Path) -> None:
    page = _write(tmp_path, "```python\nassert 1 == 2, 'rotted'\n```\n")
    (block,) = python_blocks(page)
    with pytest.raises(AssertionError, match="rotted"):
        run_block(block, {}, tmp_path)


def test_harness_checks_doctest_output(tmp_path: Path) -> None:
    good = _write(tmp_path, "```pycon\n>>> 1 + 1\n2\n```\n")
    (block,) = python_blocks(good)
    run_block(block, {}, tmp_path)
    bad = _write(tmp_path, "```python\n>>> 1 + 1\n3\n```\n")
    (block,) = python_blocks(bad)
    with pytest.raises(AssertionError, match="doctest failed"):
        run_block(block, {}, tmp_path)


def test_harness_runs_defined_tests(tmp_path: Path) -> None:
    page = _write(
        tmp_path,
        "```python\nfrom twisted.trial.unittest import SynchronousTestCase\n"
        "calls = []\n"
        "def test_one():\n    calls.append(1)\n"
        "class ThingTests(SynchronousTestCase):\n"
        "    def test_two(self):\n        calls.append(2)\n```\n",
    )
    namespace: dict[str, Any] = {"__name__": "sample"}
    (block,) = python_blocks(page)
    run_block(block, namespace, tmp_path)
    assert namespace["calls"] == [1, 2]

    failing = _write(tmp_path, "```python\ndef test_bad():\n    assert False, 'sample test failed'\n```\n")
    (block,) = python_blocks(failing)
    with pytest.raises(AssertionError, match="sample test failed"):
        run_block(block, {"__name__": "sample"}, tmp_path)

    failing_case = _write(
        tmp_path,
        "```python\nimport unittest\nclass BadTests(unittest.TestCase):\n"
        "    def test_x(self):\n        self.assertEqual(1, 2)\n```\n",
    )
    (block,) = python_blocks(failing_case)
    with pytest.raises(AssertionError, match="BadTests failed"):
        run_block(block, {"__name__": "sample"}, tmp_path)


def test_harness_compiles_fragments(tmp_path: Path) -> None:
    page = _write(tmp_path, "<!-- doc-test: fragment -->\n```python\ndef broken(:\n```\n")
    (block,) = python_blocks(page)
    with pytest.raises(SyntaxError):
        run_block(block, {}, tmp_path)


def test_fragments_are_rare() -> None:
    """
    Fragments are the exception: most samples really run.
    """
    blocks = [b for path in doc_files() for b in python_blocks(path)]
    fragments = [b.where for b in blocks if b.fragment]
    assert blocks, "no Python samples found in the docs"
    assert len(fragments) * 4 <= len(blocks), f"too many fragments: {fragments}"



# -- the configuration reference is complete -----------------------------------


def _configuration_page() -> str:
    return (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")


def test_every_environment_variable_is_documented() -> None:
    from containerflare._environ import ENVIRONMENT_VARIABLES

    page = _configuration_page()
    names = [
        name
        for row, _ in ENVIRONMENT_VARIABLES
        for name in re.findall(r"[A-Z][A-Z0-9_]+\*?", row)
    ]
    assert len(names) >= len(ENVIRONMENT_VARIABLES)
    missing = [name for name in names if f"`{name}`" not in page]
    assert not missing, f"docs/configuration.md does not document {missing}"


def test_every_option_is_documented() -> None:
    from containerflare._tap import Options

    page = _configuration_page()
    options = Options()
    rows = [(row[0], row[1]) for row in options.optParameters + options.optFlags]
    assert rows
    missing = []
    for long, short in rows:
        if f"`--{long}" not in page:
            missing.append(f"--{long}")
        if short and f"`-{short}`" not in page:
            missing.append(f"-{short}")
    assert not missing, f"docs/configuration.md does not document {missing}"
