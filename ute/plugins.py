"""Pre and post plugins: small programs in plugins/pre and plugins/post, run in name order.

`*.py` runs with UTE's own interpreter, `*.sh` with bash, any other file only if it is
executable; everything else is skipped. Each gets the file's facts in its environment
(UTE_STAGE, UTE_JOB_ID, UTE_SOURCE, UTE_OUTPUT after encoding, UTE_OVERRIDES before), runs with
a timeout, and its output goes to the file's log. A pre plugin that fails refuses the file; a
post plugin that fails is a warning on the file's record and the output stays.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ute import runner
from ute.config import Layer
from ute.defaults import DEFAULT_PLUGIN_TIMEOUT_SECONDS
from ute.errors import UteError

log = logging.getLogger(__name__)

PRE, POST = "pre", "post"
STDERR_IN_REASON_LINES = 5


class PluginError(UteError):
    """A pre plugin refused the file (or could not run)."""


@dataclass(frozen=True)
class Plugin:
    path: Path
    argv: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class StageResult:
    overrides: Layer | None = None  # what pre plugins asked for
    warnings: list[str] = field(default_factory=list)  # post plugins that failed
    log_lines: list[str] = field(default_factory=list)  # everything the plugins printed


def discover(plugins_dir: Path, stage: str) -> list[Plugin]:
    folder = plugins_dir / stage
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix == ".py":
            found.append(Plugin(path, (sys.executable, str(path))))
        elif path.suffix == ".sh":
            found.append(Plugin(path, ("bash", str(path))))
        elif os.access(path, os.X_OK):
            found.append(Plugin(path, (str(path),)))
        else:
            log.debug("plugin %s skipped: not .py, not .sh, not executable", path)
    return found


def run_pre(
    plugins_dir: Path, *, file_id: str, source: Path, work_dir: Path,
    timeout: float = DEFAULT_PLUGIN_TIMEOUT_SECONDS,
) -> StageResult:  # fmt: skip
    """Run the pre plugins; PluginError if one fails. Their overrides come back as a Layer."""
    work_dir.mkdir(parents=True, exist_ok=True)
    overrides_path = work_dir / "overrides.json"
    overrides_path.write_text("{}\n", encoding="utf-8")
    result = StageResult()
    environment = {"UTE_STAGE": PRE, "UTE_JOB_ID": file_id, "UTE_SOURCE": str(source),
                   "UTE_OVERRIDES": str(overrides_path)}  # fmt: skip
    for plugin in discover(plugins_dir, PRE):
        failure = _run(plugin, environment, timeout, result)
        if failure:
            raise PluginError(f"pre plugin {plugin.name} refused {source.name}: {failure}")
    result.overrides = Layer(f"overrides written by pre plugins ({overrides_path.name})",
                             _read_overrides(overrides_path))  # fmt: skip
    return result


def run_post(
    plugins_dir: Path, *, file_id: str, source: Path, output: Path,
    timeout: float = DEFAULT_PLUGIN_TIMEOUT_SECONDS,
) -> StageResult:  # fmt: skip
    """Run every post plugin; failures become warnings, never errors."""
    result = StageResult()
    environment = {"UTE_STAGE": POST, "UTE_JOB_ID": file_id, "UTE_SOURCE": str(source),
                   "UTE_OUTPUT": str(output)}  # fmt: skip
    for plugin in discover(plugins_dir, POST):
        failure = _run(plugin, environment, timeout, result)
        if failure:
            warning = f"post plugin {plugin.name} failed: {failure}"
            log.warning("%s: %s", source.name, warning)
            result.warnings.append(warning)
    return result


def _run(plugin: Plugin, environment: dict[str, str], timeout: float, result: StageResult) -> str | None:
    """Run one plugin; return why it failed, or None."""
    log.info("%s: running %s plugin %s", Path(environment["UTE_SOURCE"]).name,
             environment["UTE_STAGE"], plugin.name)  # fmt: skip
    try:
        outcome = runner.run(plugin.argv, timeout=timeout, check=False, cwd=plugin.path.parent,
                             env={**os.environ, **environment})  # fmt: skip
    except UteError as error:
        return str(error)
    for stream, lines in (("out", outcome.stdout.splitlines()), ("err", outcome.stderr_tail)):
        result.log_lines += [f"[{plugin.name} {stream}] {line}" for line in lines]
    if outcome.returncode == 0:
        return None
    said = " | ".join(line.strip() for line in outcome.stderr_tail[-STDERR_IN_REASON_LINES:] if line.strip())
    return f"exit status {outcome.returncode}" + (f": {said}" if said else "")


def _read_overrides(path: Path) -> dict[str, Any]:
    try:
        values = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, json.JSONDecodeError) as error:
        raise PluginError(f"the pre plugins' overrides in {path} are not valid JSON ({error})") from error
    if not isinstance(values, dict):
        raise PluginError(f"the pre plugins' overrides in {path} must be a JSON object")
    return values
