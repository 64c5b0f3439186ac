"""
Runs the Worker's unit tests (tests/e2e/worker_units.test.mjs) with node's
test runner: the metadata encoding and signature, and dispatcher edge cases
that the workerd tests do not reach.
"""

from __future__ import annotations

import subprocess

from tests.e2e._worker import EXAMPLE, HARNESS, node


def test_worker_unit_tests_pass() -> None:
    units = HARNESS.with_name("worker_units.test.mjs")
    result = subprocess.run(
        [node(), "--test", "--test-reporter=spec", str(units)],
        cwd=EXAMPLE,
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout or "ℹ fail 0" in result.stdout, result.stdout
