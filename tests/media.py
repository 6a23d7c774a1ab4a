"""Small real test videos made with ffmpeg's lavfi sources (no fixtures on disk)."""

from __future__ import annotations

from pathlib import Path

from ute import runner, tools

SUBTITLES = """1
00:00:00,500 --> 00:00:01,500
Hello

2
00:00:02,500 --> 00:00:03,500
World
"""

CHAPTERS = """;FFMETADATA1
title=UTE test clip

[CHAPTER]
TIMEBASE=1/1000
START=0
END=2000
title=One

[CHAPTER]
TIMEBASE=1/1000
START=2000
END={end_ms}
title=Two
"""


def make_clip(
    path: Path,
    *,
    seconds: float = 4.0,
    fps: int = 24,
    gop: int = 24,
    audio_tracks: int = 0,
    subtitles: bool = False,
    chapters: bool = False,
    size: str = "320x180",
    extra_video_args: tuple[str, ...] = (),
    container_args: tuple[str, ...] = (),
) -> Path:
    """An H.264 clip with a keyframe every `gop` frames and the requested extra streams."""
    argv: list[str] = [tools.ffmpeg(), "-nostdin", "-v", "error", "-y",
                       "-f", "lavfi", "-i", f"testsrc2=s={size}:r={fps}:d={seconds}"]  # fmt: skip
    maps = ["-map", "0:v"]
    inputs = 1
    for track in range(audio_tracks):
        argv += ["-f", "lavfi", "-i", f"sine=f={440 * (track + 1)}:d={seconds}"]
        maps += ["-map", f"{inputs}:a"]
        inputs += 1
    if subtitles:
        srt = path.with_suffix(".srt")
        srt.write_text(SUBTITLES, encoding="utf-8")
        argv += ["-i", str(srt)]
        maps += ["-map", f"{inputs}:s"]
        inputs += 1
    if chapters:
        meta = path.with_suffix(".ffmeta")
        meta.write_text(CHAPTERS.format(end_ms=int(seconds * 1000)), encoding="utf-8")
        argv += ["-i", str(meta)]
        maps += ["-map_metadata", str(inputs), "-map_chapters", str(inputs)]
    argv += maps
    argv += ["-c:v", "libx264", "-preset", "ultrafast", "-g", str(gop), "-keyint_min", str(gop),
             "-sc_threshold", "0", "-pix_fmt", "yuv420p", *extra_video_args]  # fmt: skip
    if audio_tracks:
        argv += ["-c:a", "aac", "-b:a", "64k"]
    if subtitles:
        argv += ["-c:s", "srt" if path.suffix == ".mkv" else "mov_text"]
    argv += [*container_args, f"file:{path}"]
    runner.run(argv)
    return path


def frame_hashes(path: Path) -> list[str]:
    """The MD5 of every decoded frame of the first video stream, in order."""
    result = runner.run([tools.ffmpeg(), "-nostdin", "-v", "error", "-i", f"file:{path}",
                         "-map", "0:v:0", "-fps_mode", "passthrough", "-f", "framemd5", "-"])  # fmt: skip
    return [line.rsplit(",", 1)[1].strip() for line in result.stdout.splitlines()
            if line and not line.startswith("#")]  # fmt: skip
