"""The CI script's own rules: every step runs, any failure fails, no tests is a failure.

``.ci/lib.sh`` holds the helpers ``.ci/run`` uses; here they run under bash with a
stand-in ``pytest`` on ``PATH``, so nothing is installed.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ci(
    script: str, tmp_path: Path, pytest_exit: int = 0, **commands: str
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` after sourcing .ci/lib.sh, with a pytest that exits ``pytest_exit``
    and stand-ins for ``commands`` (name -> shell script body) first on ``PATH``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    commands.setdefault("pytest", f"echo fake pytest\nexit {pytest_exit}")
    for name, body in commands.items():
        fake = bin_dir / name.replace("_", "-")
        fake.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
        fake.chmod(0o755)
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail\nsource .ci/lib.sh\n{script}"],
        cwd=ROOT,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
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


# --- mysqlclient: its build headers, installed when missing and possible -------------------

#: pkg-config that knows "mariadb" once the stand-in apt-get has "installed" it.
PKG_CONFIG = 'test "$2" = mariadb && test -e "{state}"'
#: apt-get that logs its arguments and exits ``status``; an install that succeeds
#: "installs" the headers.
APT_GET = (
    'echo "apt-get $*" >> "{log}"\n[ "$1/{status}" = install/0 ] && touch "{state}"\nexit {status}'
)


def _headers(tmp_path: Path, *, present: bool, uid: int, apt_status: int = 0) -> tuple[str, Path]:
    state, log = tmp_path / "headers", tmp_path / "apt.log"
    if present:
        state.touch()
    done = ci(
        "ci_extras",
        tmp_path,
        pkg_config=PKG_CONFIG.format(state=state),
        apt_get=APT_GET.format(log=log, state=state, status=apt_status),
        id=f"echo {uid}",
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip(), log


def test_with_the_headers_mysqlclient_is_installed_and_nothing_else_is(tmp_path: Path) -> None:
    extras, apt = _headers(tmp_path, present=True, uid=0)
    assert extras == "test,mysqlclient"
    assert not apt.exists()


def test_missing_headers_are_installed_with_apt_get_as_root(tmp_path: Path) -> None:
    extras, apt = _headers(tmp_path, present=False, uid=0)
    assert extras == "test,mysqlclient"
    assert apt.read_text().splitlines() == ["apt-get install -y -q libmariadb-dev pkg-config"]


def test_an_install_that_fails_is_retried_after_an_update_then_given_up(tmp_path: Path) -> None:
    extras, apt = _headers(tmp_path, present=False, uid=0, apt_status=100)
    assert extras == "test"  # the mysqlclient tests then fail under CI=true
    assert [line.split()[1] for line in apt.read_text().splitlines()] == ["install", "update"]


def test_without_root_missing_headers_leave_mysqlclient_out(tmp_path: Path) -> None:
    extras, apt = _headers(tmp_path, present=False, uid=1000)
    assert extras == "test"
    assert not apt.exists()


def test_both_virtualenvs_install_the_extras_ci_chose() -> None:
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    lib = (ROOT / ".ci" / "lib.sh").read_text(encoding="utf-8")
    assert "extras=$(ci_extras)" in run
    # Chosen (and apt-get run) once, before either virtualenv is made.
    assert run.index("extras=$(ci_extras)") < run.index("install .venv")
    assert '-e ".[$extras]"' in lib and "\nextras=test\n" in lib
