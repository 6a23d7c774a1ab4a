"""Plugin discovery and the plugin contract, with real bash and Python plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from media import make_clip

from ute import plugin_api, plugins, runner, tools
from ute.plugins import PluginError

ROOT = Path(__file__).resolve().parent.parent
ENV_DUMP = "import json, os; print(json.dumps({k: v for k, v in os.environ.items() if k.startswith('UTE_')}))"


def write(path: Path, text: str, *, executable: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if executable:
        path.chmod(0o755)
    return path


def test_discovery_runs_py_sh_and_executables_in_name_order(tmp_path: Path) -> None:
    write(tmp_path / "pre" / "02_b.py", "")
    write(tmp_path / "pre" / "01_a.sh", "")
    write(tmp_path / "pre" / "03_c", "#!/bin/sh\n", executable=True)
    write(tmp_path / "pre" / "04_notes.txt", "not a plugin")
    write(tmp_path / "pre" / ".hidden.py", "")
    found = plugins.discover(tmp_path, "pre")
    assert [p.name for p in found] == ["01_a.sh", "02_b.py", "03_c"]
    assert found[0].argv[0] == "bash" and found[1].argv[0] == sys.executable


def test_pre_plugins_see_the_contract_and_their_overrides_count(tmp_path: Path) -> None:
    source = tmp_path / "-It's a \"Test\" — ünï.mkv"
    source.write_bytes(b"video")
    write(tmp_path / "plugins" / "pre" / "01_env.py", ENV_DUMP)
    write(tmp_path / "plugins" / "pre" / "02_crop.sh",
          'echo \'{"crop": "100:50:0:2", "crf": 20}\' > "$UTE_OVERRIDES"\n')  # fmt: skip
    result = plugins.run_pre(tmp_path / "plugins", file_id="job1", source=source, work_dir=tmp_path / "w")
    environment = json.loads(result.log_lines[0].split("] ", 1)[1])
    assert environment["UTE_STAGE"] == "pre" and environment["UTE_JOB_ID"] == "job1"
    assert environment["UTE_SOURCE"] == str(source)
    assert "UTE_OUTPUT" not in environment and environment["UTE_OVERRIDES"]
    assert result.overrides is not None
    assert dict(result.overrides.values) == {"crop": "100:50:0:2", "crf": 20}


def test_a_failing_pre_plugin_refuses_the_file_with_its_stderr(tmp_path: Path) -> None:
    write(tmp_path / "pre" / "05_guard.sh", 'echo "no HDR here" >&2\nexit 3\n')
    write(tmp_path / "pre" / "06_never.sh", "touch ran\n")
    with pytest.raises(PluginError, match=r"pre plugin 05_guard.sh refused src.mkv: exit status 3: no HDR"):
        plugins.run_pre(tmp_path, file_id="j", source=tmp_path / "src.mkv", work_dir=tmp_path / "w")
    assert not (tmp_path / "pre" / "ran").exists()


def test_bad_overrides_json_is_a_clear_error(tmp_path: Path) -> None:
    write(tmp_path / "pre" / "01_bad.sh", 'echo "crop=1" > "$UTE_OVERRIDES"\n')
    with pytest.raises(PluginError, match="not valid JSON"):
        plugins.run_pre(tmp_path, file_id="j", source=tmp_path / "src.mkv", work_dir=tmp_path / "w")


def test_post_plugins_all_run_and_failures_are_warnings(tmp_path: Path) -> None:
    write(tmp_path / "post" / "01_fail.py", "import sys; sys.exit('webhook unreachable')")
    write(tmp_path / "post" / "02_env.py", ENV_DUMP)
    result = plugins.run_post(tmp_path, file_id="j", source=tmp_path / "a.mkv", output=tmp_path / "b.mkv")
    assert result.warnings == ["post plugin 01_fail.py failed: exit status 1: webhook unreachable"]
    environment = json.loads(next(line for line in result.log_lines if "02_env.py out" in line)
                             .split("] ", 1)[1])  # fmt: skip
    assert environment["UTE_STAGE"] == "post" and environment["UTE_OUTPUT"] == str(tmp_path / "b.mkv")


def test_a_plugin_that_hangs_is_stopped(tmp_path: Path) -> None:
    write(tmp_path / "pre" / "01_hang.sh", "sleep 60\n")
    with pytest.raises(PluginError, match="stopped after"):
        plugins.run_pre(tmp_path, file_id="j", source=tmp_path / "s.mkv", work_dir=tmp_path / "w", timeout=1)


def test_shipped_cropdetect_finds_letterbox_bars(tmp_path: Path) -> None:
    clip = tmp_path / "letterbox.mkv"
    runner.run([tools.ffmpeg(), "-v", "error", "-f", "lavfi", "-i",
                "testsrc2=s=320x136:r=24:d=3,pad=320:180:0:22:black", "-c:v", "libx264",
                "-preset", "ultrafast", f"file:{clip}"])  # fmt: skip
    overrides = tmp_path / "overrides.json"
    overrides.write_text("{}")
    environment = {**os.environ, "UTE_STAGE": "pre", "UTE_JOB_ID": "j", "UTE_SOURCE": str(clip),
                   "UTE_OVERRIDES": str(overrides), "UTE_CROP_SAMPLES": "5"}  # fmt: skip
    subprocess.run([sys.executable, str(ROOT / "plugins" / "pre" / "10_cropdetect.py")], env=environment,
                   check=True, timeout=120)  # fmt: skip
    assert json.loads(overrides.read_text()) == {"crop": "320:136:0:22"}

    plain = make_clip(tmp_path / "plain.mkv", seconds=2)
    overrides.write_text("{}")
    subprocess.run([sys.executable, str(ROOT / "plugins" / "pre" / "10_cropdetect.py")],
                   env={**environment, "UTE_SOURCE": str(plain)}, check=True, timeout=120)  # fmt: skip
    assert json.loads(overrides.read_text()) == {}


@pytest.mark.parametrize(("source_name", "shown"), [("movie.mp4", "movie.mp4"), ("a\nb.mp4", "a\\nb.mp4")])
def test_shipped_summary_post_plugin_writes_one_line(tmp_path: Path, source_name: str, shown: str) -> None:
    output = tmp_path / "out" / "movie.mkv"
    output.parent.mkdir()
    output.write_bytes(b"x" * 1000)
    environment = {**os.environ, "UTE_STAGE": "post", "UTE_JOB_ID": "j",
                   "UTE_SOURCE": str(tmp_path / source_name), "UTE_OUTPUT": str(output)}  # fmt: skip
    environment.pop("UTE_WEBHOOK_URL", None)
    subprocess.run([sys.executable, str(ROOT / "plugins" / "post" / "50_summary.py")], env=environment,
                   check=True, timeout=60)  # fmt: skip
    lines = (output.parent / "ute-summary.log").read_text().splitlines()
    assert len(lines) == 1 and f"{shown} -> movie.mkv" in lines[0]


def test_plugin_api_gives_the_files_id_by_both_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UTE_JOB_ID", "0123456789abcdef")
    assert plugin_api.file_id() == plugin_api.job_id() == "0123456789abcdef"
