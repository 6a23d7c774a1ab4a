from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from ute import commands
from ute.commands import AttachedFile, ChunkInput, KeptStream, Segment
from ute.settings import EncodeSettings

WEIRD = PurePosixPath("/videos/-It's a \"Test\" — ünï.mkv")


def test_seconds_are_exact_decimals() -> None:
    assert commands.seconds_argument(0) == "0.000000"
    assert commands.seconds_argument(4_004_000) == "4.004000"
    assert commands.seconds_argument(1_001) == "0.001001"
    assert commands.seconds_argument(-1_400_000) == "-1.400000"


def test_paths_reach_ffmpeg_as_file_urls_never_as_options() -> None:
    argv = commands.encode_chunk("ffmpeg", WEIRD, 0, ChunkInput(48, 48, 2_000_000), EncodeSettings(),
                                 PurePosixPath("/work/00001.mkv.part"))  # fmt: skip
    assert f"file:{WEIRD}" in argv
    assert argv[-1] == "file:/work/00001.mkv.part"
    assert not any(arg.startswith("-It") for arg in argv)


def test_relative_paths_are_refused() -> None:
    with pytest.raises(ValueError):
        commands.file_url("-rf.mkv")


def test_encode_chunk_takes_exactly_its_frames_by_their_timestamps() -> None:
    argv = commands.encode_chunk("ffmpeg", WEIRD, 2, ChunkInput(48_000, 48, 2_000_000),
                                 EncodeSettings(crf=20, preset="slow", x265_params="aq-mode=3",
                                                crop="320:160:0:10"),
                                 PurePosixPath("/w/a.part"))  # fmt: skip
    assert argv[argv.index("-ss") + 1] == "2.000000"
    assert argv.index("-ss") < argv.index("-i")
    assert {"-copyts", "-noaccurate_seek", "-noautorotate"} <= set(argv[: argv.index("-i")])
    assert argv[argv.index("-vf") + 1] == "trim=start_pts=48000,setpts=PTS-STARTPTS,crop=320:160:0:10"
    assert argv[argv.index("-frames:v") + 1] == "48"
    assert argv[argv.index("-map") + 1] == "0:2"
    assert argv[argv.index("-fps_mode") + 1] == "passthrough"
    assert argv[argv.index("-enc_time_base:v") + 1] == "demux"
    assert argv[argv.index("-crf") + 1] == "20"
    assert argv[argv.index("-preset") + 1] == "slow"
    assert argv[argv.index("-x265-params") + 1] == "log-level=info:aq-mode=3"


def test_the_first_chunk_is_read_from_the_start_without_a_seek() -> None:
    argv = commands.encode_chunk("ffmpeg", WEIRD, 0, ChunkInput(-1, 24, None), EncodeSettings(),
                                 PurePosixPath("/w/a.part"))  # fmt: skip
    assert "-ss" not in argv
    assert argv[argv.index("-vf") + 1] == "trim=start_pts=-1,setpts=PTS-STARTPTS"


def test_user_log_level_for_x265_is_kept() -> None:
    assert commands.x265_params(EncodeSettings(x265_params="log-level=info")) == "log-level=info"


def test_concat_list_gives_exact_durations_except_for_the_last_segment() -> None:
    text = commands.concat_list([Segment("00000.mkv", 2.0), Segment("00001.mkv", None)])
    assert text == "ffconcat version 1.0\nfile '00000.mkv'\nduration 2.000000\nfile '00001.mkv'\n"


def test_concat_list_refuses_names_that_could_break_the_script() -> None:
    with pytest.raises(ValueError):
        commands.concat_list([Segment("a'b.mkv", None)])


def test_mux_maps_every_kept_stream_in_source_order_and_converts_mov_text() -> None:
    kept = [KeptStream(0, "audio", "aac", ("default",)), KeptStream(2, "subtitle", "mov_text"),
            KeptStream(3, "attachment", "ttf")]  # fmt: skip
    video = KeptStream(1, "video", "h264", ("default",), ("ENCODER", "BPS-eng"))
    cover = AttachedFile(PurePosixPath("/w/cover-4.jpg"), "cover.jpg", "image/jpeg")
    argv = commands.mux("ffmpeg", PurePosixPath("/w/list"), WEIRD, video, kept, [cover], 0,
                        PurePosixPath("/out/x.mkv"))  # fmt: skip
    maps = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-map"]
    assert maps == ["0:v:0", "1:0", "1:2", "1:3"]
    assert argv[argv.index("-c:2") + 1] == "subrip"
    assert "-itsoffset" not in argv
    assert argv[argv.index("-map_chapters") + 1] == "1"
    # every stream's tags and flags by name: one explicit mapping switches off all default copying
    pairs = {(argv[i], argv[i + 1]) for i in range(len(argv) - 1)}
    assert {("-map_metadata:s:0", "1:s:1"), ("-map_metadata:s:1", "1:s:0"), ("-map_metadata:s:2", "1:s:2"),
            ("-map_metadata:s:3", "1:s:3")} <= pairs  # fmt: skip
    assert {("-disposition:0", "default"), ("-disposition:1", "default"), ("-disposition:2", "0")} <= pairs
    assert {("-metadata:s:0", "ENCODER="), ("-metadata:s:0", "BPS-eng=")} <= pairs
    assert ("-attach", "file:/w/cover-4.jpg") in pairs
    assert {("-metadata:s:t:1", "filename=cover.jpg"), ("-metadata:s:t:1", "mimetype=image/jpeg")} <= pairs
    assert argv[argv.index("-default_mode") + 1] == "passthrough"
    assert "-field_order:0" not in argv


def test_mux_restores_an_interlaced_field_order() -> None:
    argv = commands.mux("ffmpeg", PurePosixPath("/w/list"), WEIRD, KeptStream(0, "video", "h264"), [], [],
                        0, PurePosixPath("/out/x.mkv"), field_order="tt")  # fmt: skip
    assert argv[argv.index("-field_order:0") + 1] == "tt"


def test_mux_shifts_video_that_starts_after_the_other_streams() -> None:
    argv = commands.mux("ffmpeg", PurePosixPath("/w/list"), WEIRD, KeptStream(0, "video", "h264"), [], [],
                        40_000, PurePosixPath("/out/x.mkv"))  # fmt: skip
    assert argv[argv.index("-itsoffset") + 1] == "0.040000"
    assert argv.index("-itsoffset") < argv.index("-f")


def test_the_worker_s_threads_become_x265_s_pool_unless_the_settings_name_one() -> None:
    argv = commands.encode_chunk("ffmpeg", WEIRD, 0, ChunkInput(-1, 24, None), EncodeSettings(),
                                 PurePosixPath("/w/a.part"), threads=3)  # fmt: skip
    assert argv[argv.index("-x265-params") + 1] == "log-level=info:pools=3"
    assert commands.x265_params(EncodeSettings(x265_params="aq-mode=3")) == "log-level=info:aq-mode=3"
    for own in ("pools=8", "numa-pools=4,4", "frame-threads=2:pools=+"):
        assert commands.names_thread_pool(EncodeSettings(x265_params=own))
        assert commands.x265_params(EncodeSettings(x265_params=own), threads=1) == f"log-level=info:{own}"
    assert not commands.names_thread_pool(EncodeSettings(x265_params="frame-threads=2"))
