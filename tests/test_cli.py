"""The installed console scripts, as a user types them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from media import make_clip

from ute import state


def run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    executable = shutil.which(str(argv[0]))
    assert executable, f"{argv[0]} is not installed: pip install -e ."
    return subprocess.run([executable, *map(str, argv[1:])], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip


@pytest.mark.parametrize("script", ["ute", "ute-worker"])
def test_help_explains_the_commands(script: str) -> None:
    result = run(script, "--help")
    assert result.returncode == 0
    assert "redis" in result.stdout.lower() or "encode" in result.stdout.lower()


def test_encode_help_lists_the_encode_options() -> None:
    result = run("ute", "encode", "--help")
    for option in ("--crf", "--preset", "--x265-params", "--chunk-frames", "--workers",
                   "--redis-url"):  # fmt: skip
        assert option in result.stdout


def test_plan_json_matches_the_contract(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mkv", seconds=6, fps=24, gop=24)
    result = run("ute", "plan", clip, "--json", "--chunk-frames", "48")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert set(plan) == {"source", "frames", "fps", "keyframes", "chunks"}
    assert plan["frames"] == 144 and plan["fps"] == 24
    assert plan["keyframes"] == [0, 24, 48, 72, 96, 120]
    assert plan["chunks"] == [
        {"index": 0, "start": 0, "end": 48},
        {"index": 1, "start": 48, "end": 96},
        {"index": 2, "start": 96, "end": 144},
    ]


def test_plan_table_for_people(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mkv", seconds=2)
    result = run("ute", "plan", clip)
    assert result.returncode == 0 and "chunk" in result.stdout and "48" in result.stdout


def test_plan_of_a_missing_file_is_one_line(tmp_path: Path) -> None:
    result = run("ute", "plan", tmp_path / "missing.mkv")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "missing.mkv" in result.stderr


def test_a_redis_password_never_shows_in_messages() -> None:
    assert state.redacted("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert state.redacted("rediss://ute:s3cret@host:6380/0?ssl_ca_certs=/ca.pem") == (
        "rediss://ute:***@host:6380/0?ssl_ca_certs=/ca.pem")  # fmt: skip
    assert state.redacted("redis://host:6379/0") == "redis://host:6379/0"
    assert state.redacted("redis://host:6379/0?password=s3cret&ssl_ca_certs=/ca.pem") == (
        "redis://host:6379/0?password=***&ssl_ca_certs=/ca.pem")  # fmt: skip
    for argv in (["ute", "status", "--once"], ["ute-worker"]):
        result = run(*argv, "--redis-url", "redis://:s3cret@127.0.0.1:9/0")
        assert result.returncode != 0 and "redis://:***@127.0.0.1:9/0" in result.stderr
        assert "s3cret" not in result.stdout + result.stderr
