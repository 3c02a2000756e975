"""README's quickstart runs as pasted, on the embedded default, and runs again."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def quickstart() -> str:
    """The python block of README's Quickstart."""
    text = README.read_text()
    section = text.split("## Quickstart\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match, "README's Quickstart has no python block"
    return match.group(1)


def test_the_quickstart_runs_as_pasted_and_again(tmp_path: Path) -> None:
    script = tmp_path / "quickstart.py"
    script.write_text(quickstart())
    env = {k: v for k, v in os.environ.items() if k != "DAL_DATABASE_URL"}

    for run in (1, 2):  # the second run meets the first one's rows
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"run {run}:\n{done.stderr}"
        assert "'cache':" in done.stdout and "'pool':" in done.stdout
    assert (tmp_path / "dal.sqlite3").exists()
