"""Promise 12: mypy (strict, with ``plugins = ["dal.mypy"]``) knows each column's type on
a record, rejects a misspelt or assigned attribute and a mismatching model, and types a
cached function's ORM results as the records they arrive as.

The programs in ``tests/typed/`` are checked by mypy as a user's would be: from another
directory, finding ``dal`` through the installed package (an editable install included).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_readme import quickstart

PROGRAMS = Path(__file__).parent / "typed"
CONFIG = """\
[mypy]
strict = true
plugins = dal.mypy
"""


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """mypy's messages per checked file, from one run over the typed programs."""
    root = tmp_path_factory.mktemp("typed")
    shutil.copytree(PROGRAMS, root / "typed")
    (root / "typed" / "quickstart.py").write_text(quickstart())
    (root / "mypy.ini").write_text(CONFIG)
    # Outside the repository: dal must come from the installed distribution.
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "--show-error-codes", "typed"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "INTERNAL ERROR" not in done.stderr + done.stdout, done.stderr + done.stdout
    messages: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        name, _, rest = line.partition(":")
        messages.setdefault(Path(name).name, []).append(rest)
    return messages


def test_a_program_that_uses_dal_as_documented_is_clean(mypy_output: dict[str, list[str]]) -> None:
    assert mypy_output.get("clean.py", []) == []
    assert mypy_output.get("models.py", []) == []
    assert mypy_output.get("quickstart.py", []) == []  # README's, as pasted


def test_each_mistake_is_reported_where_it_is(mypy_output: dict[str, list[str]]) -> None:
    expected = {}
    source = (PROGRAMS / "errors.py").read_text().splitlines()
    for number, line in enumerate(source, start=1):
        if "# E: " in line:
            expected[number] = line.split("# E: ", 1)[1]
    found: dict[int, list[str]] = {}
    for message in mypy_output.get("errors.py", []):
        number, _, text = message.partition(":")
        found.setdefault(int(number), []).append(text)

    assert len(expected) >= 9
    for number, text in expected.items():
        assert any(text in message for message in found.get(number, [])), (
            f"errors.py:{number}: expected {text!r}, mypy said {found.get(number)}"
        )
    unexpected = {n: m for n, m in found.items() if n not in expected}
    assert not unexpected, f"errors mypy reported on unmarked lines: {unexpected}"


def test_mypy_finds_dal_without_the_source_tree_on_its_path(tmp_path: Path) -> None:
    """An editable install is a plain path entry that mypy follows (no import hook)."""
    (tmp_path / "use.py").write_text("import dal\n\nreveal_type(dal.Database)\n")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "use.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert re.search(r'Revealed type is "def .*dal\.database\.Database', done.stdout), done.stdout
    assert "import-not-found" not in done.stdout
