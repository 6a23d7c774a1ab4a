"""The code stays ruff-clean (the same check a developer runs by hand), and the README's layout names
every module."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is in the [test] extra")
def test_ruff_is_clean() -> None:
    result = subprocess.run(["ruff", "check", str(ROOT)], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_readme_layout_names_every_module() -> None:
    layout = (ROOT / "README.md").read_text().split("## Layout", 1)[1]
    modules = {path.stem for path in (ROOT / "ute").glob("*.py")} - {"__init__"}
    assert not [name for name in sorted(modules) if f"`{name}`" not in layout]
