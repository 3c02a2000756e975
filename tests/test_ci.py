"""The CI script's own rules: every step runs, any failure fails, no tests is a failure.

``.ci/lib.sh`` holds the helpers ``.ci/run`` uses; here they run under bash with a
stand-in ``pytest`` on ``PATH``, so nothing is installed.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ci(script: str, tmp_path: Path, pytest_exit: int = 0) -> subprocess.CompletedProcess[str]:
    """Run ``script`` after sourcing .ci/lib.sh, with a pytest that exits ``pytest_exit``."""
    fake = tmp_path / "bin" / "pytest"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text(f"#!/bin/sh\necho fake pytest\nexit {pytest_exit}\n", encoding="utf-8")
    fake.chmod(0o755)
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail\nsource .ci/lib.sh\n{script}"],
        cwd=ROOT,
        env={"PATH": f"{fake.parent}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_run_that_collects_no_tests_fails(tmp_path: Path) -> None:
    done = ci('step "Test" tests\nverdict', tmp_path, pytest_exit=5)
    assert done.returncode == 1, done.stdout
    assert "collected no tests" in done.stdout
    assert "failed: Test" in done.stdout


def test_passing_tests_pass(tmp_path: Path) -> None:
    done = ci('step "Test" tests\nverdict', tmp_path, pytest_exit=0)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fake pytest" in done.stdout


def test_a_failed_step_fails_the_run_but_the_later_steps_still_run(tmp_path: Path) -> None:
    done = ci('step "lint" false\nstep "Test" tests\nverdict', tmp_path, pytest_exit=0)
    assert done.returncode == 1
    assert "fake pytest" in done.stdout  # the tests ran after the failed lint
    assert "failed: lint" in done.stdout and "failed: Test" not in done.stdout


def test_a_step_run_alongside_counts_and_its_output_is_shown(tmp_path: Path) -> None:
    script = (
        'alongside "side" bash -c "echo side says hi; exit 3"\n'
        'alongside "other" tests\n'
        'step "main" true\n'
        "join\n"
        "verdict"
    )
    done = ci(script, tmp_path, pytest_exit=5)
    assert done.returncode == 1
    assert "side says hi" in done.stdout and "side: failed (exit 3)" in done.stdout
    assert "collected no tests" in done.stdout and "other: failed" in done.stdout
    assert "failed: main" not in done.stdout


def test_ci_lints_type_checks_and_tests_twice() -> None:
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for command in ("ruff check .", "ruff format --check .", "mypy", "tests"):
        assert re.search(rf'^step "[^"]+" {re.escape(command)}$', run, re.M), command
    assert "install .venv-lowest -c .ci/lowest.txt" in run
    assert re.search(r'^alongside "[^"]+" lowest$', run, re.M)
    lines = run.splitlines()
    # The side run is waited for before the verdict, which is the last word.
    assert lines.index('step "Test" tests') < lines.index("join") < lines.index("verdict")
    assert lines[-1] == "verdict"


def _version(text: str) -> tuple[int, ...]:
    parts = tuple(int(p) for p in text.split("."))
    return parts + (0,) * (3 - len(parts))


def test_the_lowest_versions_are_pyprojects_floors() -> None:
    # Python 3.10 has no tomllib: the dependency list is read as text.
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    dependencies = re.search(r"^dependencies = \[(.*?)^\]", pyproject, re.M | re.S)
    assert dependencies is not None
    floors = {
        name.lower(): _version(floor)
        for name, floor in re.findall(r'"([\w.-]+)>=([\d.]+)', dependencies.group(1))
    }
    pins = {}
    for line in (ROOT / ".ci" / "lowest.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, pin = line.split("==")
            pins[name.strip().lower()] = _version(pin.strip())
    assert set(pins) == set(floors)
    assert pins["sqlalchemy"] == floors["sqlalchemy"]
    assert pins["cachetools"] == floors["cachetools"]
    # No wheel below 2.9.5 for the CI Python; see .ci/lowest.txt.
    assert pins["psycopg2-binary"] >= floors["psycopg2-binary"]
