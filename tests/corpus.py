"""A corpus of small synthetic sources shaped like the videos people really have.

Every shape is made with ffmpeg's lavfi sources (no fixtures on disk), is 2-4 s of 160x90 to
320x180 video with a keyframe every 12-25 frames (24-frame chunks give several chunks), and is
deterministic for a given ffmpeg build (`-fflags +bitexact`: no random Matroska UIDs, no muxer
version strings, no creation times). Each maker takes the output path and a scratch folder for the
helper files (subtitles, fonts, cover pictures, first passes) it needs.

    make("mkv_many_tracks", tmp_path)  ->  tmp_path / "mkv_many_tracks.mkv"

`tests/independent.py` describes what each file holds; `tests/test_corpus.py` checks that every
shape really has the feature its name promises, and that `reference_remux` (ffmpeg `-c copy` into
Matroska with the options `remux_argv` documents) keeps everything.

Found on the way, with one plain `libx265 lossless=1` pass over the whole file (not UTE's chunked
encode) on top of the reference remux's options, for whoever writes the transcode:

- rotation: ffmpeg rotates the pixels (autorotate) and drops the display matrix when it decodes:
  input option `-noautorotate` keeps both the frames and the matrix (`-autorotate 0` is parsed
  as a flag plus an output file name "0" by ffmpeg 9).
- TS/PS sources (audio starting 5-21 ms before the video) and jittered VFR MP4: the encoder's
  default time base moves the video start onto a frame boundary and rounds every frame time:
  `-enc_time_base:v demux -fps_mode:v passthrough` keeps offsets and frame times.
- interlaced H.264: libx265 codes frames progressive, so decoded HEVC frames are not flagged
  interlaced (the MKV FieldOrder is written, as `tb`, also for a TS source that said `tt`);
  `-x265-params interlace=tff` keeps frames bit-exact and flagged interlaced, but ffmpeg's HEVC
  decoder then reports top/bottom field first alternately. compare() reports both.
- everything else (HDR10 side data and Colour, 10-bit, 4:2:2, 4:4:4, full range, VFR 24/30,
  open GOP, AVI, cover art, fonts, offsets) came through compare() clean.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ute import runner, tools

SIZE = "320x180"
BITEXACT = ("-fflags", "+bitexact")


@dataclass(frozen=True)
class Shape:
    name: str
    suffix: str
    maker: Callable[[Path, Path], None]
    notes: str


def make(shape_name: str, folder: Path) -> Path:
    """Make the shape's file as `folder/<name><suffix>` (helper files in `folder/<name>.parts/`)."""
    shape = SHAPES_BY_NAME[shape_name]
    path = Path(folder).resolve() / f"{shape.name}{shape.suffix}"
    scratch = path.with_name(f"{shape.name}.parts")
    scratch.mkdir(parents=True, exist_ok=True)
    shape.maker(path, scratch)
    return path


# --- helpers --------------------------------------------------------------------------------


def ffmpeg(*args: str | Path) -> None:
    runner.run([tools.ffmpeg(), "-nostdin", "-hide_banner", "-v", "error", "-y", *map(str, args)],
               timeout=120)  # fmt: skip


def f(path: Path) -> str:
    """ffmpeg's name for a local file, safe whatever characters the path has."""
    return f"file:{path}"


def video_in(seconds: float = 3, fps: str | int = 24, size: str = SIZE) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=s={size}:r={fps}:d={seconds}"]


def sine_in(freq: int, seconds: float = 3, rate: int = 48000) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=f={freq}:d={seconds}:sample_rate={rate}"]


def x264(gop: int = 12, pix_fmt: str = "yuv420p", params: str = "", preset: str = "ultrafast") -> list[str]:
    """libx264 with a keyframe exactly every `gop` frames (no scene-cut keyframes)."""
    x264_params = f"keyint={gop}:min-keyint={gop}:scenecut=0" + (f":{params}" if params else "")
    return ["-c:v", "libx264", "-preset", preset, "-pix_fmt", pix_fmt, "-x264-params", x264_params]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def srt(*cues: tuple[str, str, str]) -> str:
    return "\n".join(f"{number}\n{start} --> {end}\n{text}\n"
                     for number, (start, end, text) in enumerate(cues, 1))  # fmt: skip


FFMETADATA = """;FFMETADATA1
title=Many Tracks Test
COMMENT=made by tests/corpus.py
ARTIST=UTE corpus

[CHAPTER]
TIMEBASE=1/1000
START=0
END=1000
title=Opening

[CHAPTER]
TIMEBASE=1/1000
START=1000
END=2000
title=Middle: ünïcode

[CHAPTER]
TIMEBASE=1/1000
START=2000
END=3000
title=End Credits
"""

ASS = """[Script Info]
ScriptType: v4.00+
PlayResX: 320
PlayResY: 180
Title: corpus fonts test

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, \
Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, \
MarginL, MarginR, MarginV, Encoding
Style: Default,{font_a},20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,1
Style: Sign,{font_b},16,&H0000FFFF,&H000000FF,&H00000000,&H00000000,-1,0,0,0,100,100,0,0,1,1,0,8,10,10,10,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:00.50,0:00:01.50,Default,,0,0,0,,Styled {{\\i1}}hello{{\\i0}}
Dialogue: 1,0:00:01.00,0:00:02.50,Sign,,0,0,0,,A sign on top
Dialogue: 0,0:00:02.00,0:00:02.90,Default,,0,0,0,,Goodbye
"""

FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "/Library/Fonts", "C:/Windows/Fonts")


def fonts(scratch: Path) -> list[Path]:
    """Two real TrueType files from this machine (the two smallest), else two generated ones."""
    found: list[Path] = []
    for folder in map(Path, FONT_DIRS):
        if folder.is_dir():
            found += [p for p in folder.rglob("*") if p.suffix.lower() == ".ttf" and p.is_file()]
    found = sorted(found, key=lambda p: (p.stat().st_size, p.name))[:2]
    result = []
    for number in range(2):
        target = scratch / (found[number].name if len(found) == 2 else f"CorpusFont{number}.ttf")
        if len(found) == 2:
            shutil.copyfile(found[number], target)
        else:
            target.write_bytes(_tiny_sfnt(number))
        result.append(target)
    return result


def _tiny_sfnt(seed: int) -> bytes:
    """A TrueType-shaped file (sfnt header and one `name` table): what a muxer sees of a font."""
    import struct

    name = f"Corpus Font {seed}".encode("utf-16-be")
    table = struct.pack(">HHH", 0, 1, 18) + struct.pack(">HHHHHH", 3, 1, 0x409, 4, len(name), 0) + name
    header = struct.pack(">IHHHH", 0x00010000, 1, 16, 0, 0)
    record = struct.pack(">4sIII", b"name", sum(table) & 0xFFFFFFFF, 12 + 16, len(table))
    return header + record + table


def cover_picture(scratch: Path, codec: str = "png") -> Path:
    """A 64x64 still from lavfi, as PNG or JPEG."""
    path = scratch / ("cover.png" if codec == "png" else "cover.jpg")
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x64:r=1:d=1", "-frames:v", "1", *BITEXACT,
           "-c:v", codec, *(["-pix_fmt", "yuvj420p"] if codec == "mjpeg" else []), f(path))  # fmt: skip
    return path


# --- the shapes ---------------------------------------------------------------------------------


def mkv_many_tracks(path: Path, scratch: Path) -> None:
    eng = write(scratch / "eng.srt", srt(("00:00:00,500", "00:00:01,400", "Hello"),
                                         ("00:00:02,000", "00:00:02,800", "<i>World</i>")))  # fmt: skip
    jpn = write(scratch / "jpn.srt", srt(("00:00:00,250", "00:00:01,000", "こんにちは"),
                                         ("00:00:01,500", "00:00:02,900", "世界")))  # fmt: skip
    meta = write(scratch / "meta.ffmeta", FFMETADATA)
    ffmpeg(*video_in(3), *sine_in(440), *sine_in(660), "-i", f(eng), "-i", f(jpn), "-i", f(meta),
           "-map", "0:v", "-map", "1:a", "-map", "2:a", "-map", "3:s", "-map", "4:s",
           "-map_metadata", "5", "-map_chapters", "5",
           *x264(12), "-c:a:0", "aac", "-ac:a:0", "2", "-b:a:0", "96k", "-c:a:1", "ac3", "-b:a:1", "96k",
           "-c:s", "srt",
           "-metadata:s:v:0", "title=Main Picture", "-metadata:s:v:0", "language=eng",
           "-metadata:s:a:0", "language=eng", "-metadata:s:a:0", "title=English Stereo",
           "-metadata:s:a:0", "MIX=stereo downmix v2",
           "-metadata:s:a:1", "language=ger", "-metadata:s:a:1", "title=Deutsch Kommentar",
           "-metadata:s:a:1", "COMMENTATOR=Regie",
           "-metadata:s:s:0", "language=eng", "-metadata:s:s:0", "title=English SDH",
           "-metadata:s:s:0", "SOURCE_ID=sub-0001",
           "-metadata:s:s:1", "language=jpn", "-metadata:s:s:1", "title=日本語 (forced)",
           "-disposition:v:0", "default", "-disposition:a:0", "original",
           "-disposition:a:1", "comment+visual_impaired", "-disposition:s:0", "hearing_impaired",
           "-disposition:s:1", "default+forced",
           *BITEXACT, f(path))  # fmt: skip


def mkv_fonts_ass(path: Path, scratch: Path) -> None:
    font_a, font_b = fonts(scratch)
    ass = write(scratch / "styled.ass", ASS.format(font_a=font_a.stem, font_b=font_b.stem))
    ffmpeg(*video_in(3), *sine_in(440), "-i", f(ass),
           "-attach", font_a, "-attach", font_b,
           "-map", "0:v", "-map", "1:a", "-map", "2:s", *x264(12), "-c:a", "libopus", "-b:a", "48k",
           "-c:s", "copy", "-metadata:s:s:0", "language=eng", "-metadata:s:s:0", "title=Styled",
           "-metadata:s:t:0", "mimetype=application/x-truetype-font",
           "-metadata:s:t:0", f"filename={font_a.name}",
           "-metadata:s:t:1", "mimetype=font/ttf", "-metadata:s:t:1", f"filename={font_b.name}",
           "-metadata:s:t:1", "title=Second font",
           *BITEXACT, f(path))  # fmt: skip


def mp4_bframes(path: Path, scratch: Path) -> None:
    # MP4 has no "default" flag, only "track enabled": ffmpeg enables the default track of each
    # kind, or the first one when none is default, and reads "enabled" back as default. So the
    # lone video and subtitle tracks come back default although made with disposition 0, and of
    # the two audio tracks only the default one is.
    subs = write(scratch / "subs.srt", srt(("00:00:00,400", "00:00:01,200", "Bonjour"),
                                           ("00:00:02,000", "00:00:03,000", "Le monde")))  # fmt: skip
    ffmpeg(*video_in(4, 25), *sine_in(440, 4, 44100), *sine_in(550, 4, 44100), "-i", f(subs),
           "-map", "0:v", "-map", "1:a", "-map", "2:a", "-map", "3:s",
           *x264(25, params="bframes=3:b-adapt=0:b-pyramid=none", preset="superfast"),
           "-c:a", "aac", "-b:a", "64k", "-c:s", "mov_text",
           "-metadata:s:a:0", "language=fra", "-metadata:s:a:1", "language=eng",
           "-metadata:s:s:0", "language=fra",
           "-metadata", "title=B-frames in MP4", "-metadata", "comment=bframes=3",
           "-metadata", "creation_time=2024-05-01T12:34:56.000000Z",
           "-disposition:v:0", "0", "-disposition:a:0", "0", "-disposition:a:1", "default",
           "-disposition:s:0", "0", *BITEXACT, f(path))  # fmt: skip


def mov_timecode(path: Path, scratch: Path) -> None:
    ffmpeg(*video_in(3, 24), *sine_in(440), "-map", "0:v", "-map", "1:a", *x264(12),
           "-c:a", "pcm_s16le", "-metadata:s:a:0", "language=eng", "-timecode", "01:00:00:00",
           *BITEXACT, f(path))  # fmt: skip


def ts_offset(path: Path, scratch: Path) -> None:
    ffmpeg(*video_in(3, 25), *sine_in(440), *sine_in(880),
           "-map", "0:v", "-map", "1:a", "-map", "2:a", *x264(25),
           "-c:a:0", "aac", "-b:a:0", "64k", "-c:a:1", "ac3", "-b:a:1", "96k",
           "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=spa",
           "-output_ts_offset", "10", "-metadata", "service_name=Corpus TV",
           *BITEXACT, "-f", "mpegts", f(path))  # fmt: skip


def m2ts(path: Path, scratch: Path) -> None:
    ffmpeg(*video_in(3, 24), *sine_in(440), "-map", "0:v", "-map", "1:a", *x264(24),
           "-c:a", "ac3", "-b:a", "96k", "-metadata:s:a:0", "language=eng",
           *BITEXACT, "-f", "mpegts", "-mpegts_m2ts_mode", "1", f(path))  # fmt: skip


def avi_asp_bframes(path: Path, scratch: Path) -> None:
    ffmpeg(*video_in(3, 25), *sine_in(440, 3, 44100), "-map", "0:v", "-map", "1:a",
           "-c:v", "mpeg4", "-bf", "2", "-g", "12", "-q:v", "4", "-vtag", "XVID",
           "-c:a", "libmp3lame", "-b:a", "64k", "-metadata", "title=DivX era",
           *BITEXACT, f(path))  # fmt: skip


def webm_vp9(path: Path, scratch: Path) -> None:
    ffmpeg(*video_in(3, 24, "160x90"), *sine_in(440), "-map", "0:v", "-map", "1:a",
           "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-g", "12",
           "-keyint_min", "12", "-b:v", "200k", "-c:a", "libopus", "-b:a", "48k",
           "-metadata:s:a:0", "language=fin", "-metadata:s:a:0", "title=Suomi",
           *BITEXACT, f(path))  # fmt: skip


def vfr_24_30(path: Path, scratch: Path) -> None:
    graph = (f"testsrc2=s={SIZE}:r=24:d=1.5[a];testsrc2=s={SIZE}:r=30:d=1.5[b];"
             "[a][b]concat=n=2:v=1:a=0[v]")  # fmt: skip
    ffmpeg("-filter_complex", graph, *sine_in(440), "-map", "[v]", "-map", "0:a", *x264(12),
           "-fps_mode", "passthrough", "-c:a", "aac", "-b:a", "64k", *BITEXACT, f(path))  # fmt: skip


def mp4_vfr_jitter(path: Path, scratch: Path) -> None:
    # Frame n lands at n/30 s plus a deterministic jitter of up to +-9 ms, and every 10th frame is
    # late by a whole frame (a screen recorder dropping a frame): no two intervals alike.
    jitter = "settb=1/90000,setpts=((N+floor(N/10))/30+0.009*sin(N*12.9898))/TB"
    ffmpeg(*video_in(3, 30), *sine_in(440), "-map", "0:v", "-map", "1:a", "-vf", jitter,
           *x264(15), "-fps_mode", "passthrough", "-enc_time_base", "1/90000",
           "-c:a", "aac", "-b:a", "64k", "-movflags", "+use_metadata_tags",
           "-metadata", "com.example.recorder=ScreenGrab 2.1", "-metadata", "title=Screen capture",
           *BITEXACT, f(path))  # fmt: skip


def open_gop(path: Path, scratch: Path) -> None:
    ffmpeg(*video_in(3, 24), *sine_in(440), "-map", "0:v", "-map", "1:a",
           *x264(12, params="open-gop=1:bframes=3:b-adapt=0", preset="superfast"),
           "-c:a", "aac", "-b:a", "64k", *BITEXACT, f(path))  # fmt: skip


def mpeg2_ps(path: Path, scratch: Path) -> None:
    ffmpeg(*video_in(3, 25), *sine_in(440), "-map", "0:v", "-map", "1:a",
           "-c:v", "mpeg2video", "-bf", "2", "-g", "12", "-q:v", "4", "-c:a", "mp2", "-b:a", "128k",
           *BITEXACT, "-f", "vob", f(path))  # fmt: skip


def interlaced_tff(path: Path, scratch: Path) -> None:
    ffmpeg(*video_in(3, 50), *sine_in(440), "-map", "0:v", "-map", "1:a",
           "-vf", "interlace=scan=tff,setfield=tff", *x264(12, params="tff=1"),
           "-flags", "+ilme+ildct", "-c:a", "aac", "-b:a", "64k",
           *BITEXACT, f(path))  # fmt: skip


def interlaced_tff_ts(path: Path, scratch: Path) -> None:
    ffmpeg(*video_in(3, 50), *sine_in(440), "-map", "0:v", "-map", "1:a",
           "-vf", "interlace=scan=tff,setfield=tff", *x264(12, params="tff=1"),
           "-flags", "+ilme+ildct", "-c:a", "mp2", "-b:a", "128k", "-metadata:s:a:0", "language=deu",
           *BITEXACT, "-f", "mpegts", f(path))  # fmt: skip


def tenbit_420(path: Path, scratch: Path) -> None:
    ffmpeg(*video_in(3, 24), "-map", "0:v", *x264(12, "yuv420p10le"), *BITEXACT, f(path))


def yuv422(path: Path, scratch: Path) -> None:
    ffmpeg(*video_in(3, 24), "-map", "0:v", *x264(12, "yuv422p"), *BITEXACT, f(path))


def yuv444(path: Path, scratch: Path) -> None:
    ffmpeg(*video_in(3, 24), "-map", "0:v", *x264(12, "yuv444p"), *BITEXACT, f(path))


def full_range(path: Path, scratch: Path) -> None:
    ffmpeg(*video_in(3, 24), *sine_in(440), "-map", "0:v", "-map", "1:a",
           "-vf", "scale=out_range=pc",
           *x264(12, params="fullrange=on:colorprim=bt709:transfer=bt709:colormatrix=bt709"),
           "-color_range", "pc",
           "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709",
           "-c:a", "aac", "-b:a", "64k", *BITEXACT, f(path))  # fmt: skip


HDR10_X265 = ("hdr10=1:hdr10-opt=0:repeat-headers=1:colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc"
              ":master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"
              ":max-cll=1000,400:keyint=12:min-keyint=12:scenecut=0")  # fmt: skip
HDR_COLOUR = ("-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc")


def hdr10(path: Path, scratch: Path) -> None:
    # First pass: the SEI messages are in the HEVC bitstream only. Second pass: decoding the first
    # gives frames with mastering-display and light-level side data, which ffmpeg hands to the
    # muxer too, so the file has them both in-band and in Matroska's Colour element, as real
    # HDR10 files do.
    first = scratch / "first.mkv"
    ffmpeg(*video_in(2, 24), "-map", "0:v", "-c:v", "libx265", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p10le", "-x265-params", f"log-level=error:{HDR10_X265}", *HDR_COLOUR,
           *BITEXACT, f(first))  # fmt: skip
    ffmpeg("-i", f(first), *sine_in(440, 2), "-map", "0:v", "-map", "1:a", "-c:v", "libx265",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p10le",
           "-x265-params", f"log-level=error:{HDR10_X265}", *HDR_COLOUR,
           "-c:a", "libopus", "-b:a", "48k", *BITEXACT, f(path))  # fmt: skip


def rotation(path: Path, scratch: Path) -> None:
    plain = scratch / "plain.mp4"
    ffmpeg(*video_in(3, 24, "240x136"), *sine_in(440), "-map", "0:v", "-map", "1:a", *x264(12),
           "-c:a", "aac", "-b:a", "64k", *BITEXACT, f(plain))  # fmt: skip
    ffmpeg("-display_rotation", "90", "-i", f(plain), "-map", "0", "-c", "copy", *BITEXACT, f(path))


def cover_art(path: Path, scratch: Path) -> None:
    cover = cover_picture(scratch, "png")
    ffmpeg(*video_in(3, 24), *sine_in(440), "-i", f(cover), "-map", "0:v", "-map", "1:a", "-map", "2:v",
           *x264(12), "-c:v:1", "copy", "-disposition:v:1", "attached_pic",
           "-c:a", "aac", "-b:a", "64k", "-metadata", "title=With a cover",
           "-metadata", "artist=Corpus", *BITEXACT, f(path))  # fmt: skip


def mkv_cover_attachment(path: Path, scratch: Path) -> None:
    cover = cover_picture(scratch, "mjpeg")
    ffmpeg(*video_in(3, 24), *sine_in(440), "-map", "0:v", "-map", "1:a", "-attach", cover,
           *x264(12), "-c:a", "libopus", "-b:a", "48k",
           "-metadata:s:t:0", "mimetype=image/jpeg", "-metadata:s:t:0", "filename=cover.jpg",
           *BITEXACT, f(path))  # fmt: skip


def _offset_audio(path: Path, video_offset: float, audio_offset: float) -> None:
    # 30 fps: 0.1 s is a whole number of frames, so the encoder's 1/30 clock keeps it exact.
    ffmpeg("-itsoffset", str(video_offset), *video_in(3, 30), "-itsoffset", str(audio_offset),
           *sine_in(440), "-map", "0:v", "-map", "1:a", *x264(15), "-c:a", "libopus", "-b:a", "48k",
           *BITEXACT, f(path))  # fmt: skip


def audio_before_video(path: Path, scratch: Path) -> None:
    _offset_audio(path, 0.1, 0.0)


def audio_after_video(path: Path, scratch: Path) -> None:
    _offset_audio(path, 0.0, 0.2)


# --- the reference remux: what `-c copy` into Matroska needs to keep everything --------------------

PICTURE_NAMES = {"png": ("cover.png", "image/png"), "mjpeg": ("cover.jpg", "image/jpeg"),
                 "bmp": ("cover.bmp", "image/bmp"), "webp": ("cover.webp", "image/webp")}  # fmt: skip
# Containers that store no presentation timestamps (only a frame order): with B-frames the
# Matroska muxer refuses the packets ("Can't write packet with unknown timestamp").
NO_PTS_FORMATS = {"avi"}


def remux_argv(source: Path, output: Path, scratch: Path) -> list[str]:
    """`ffmpeg -i SOURCE -map 0 -c copy -f matroska OUTPUT` plus what it takes to keep everything.

    Measured with ffmpeg 9.0.2 on every shape of the corpus (test_corpus.py proves compare() finds
    nothing); what a plain `-map 0 -c copy` loses, and the option that keeps it:

    - AVI (no presentation timestamps) with B-frames: the muxer fails with "Can't write packet with
      unknown timestamp": input option `-fflags +genpts`.
    - A MOV/MP4 timecode (tmcd) track: "Only audio, video, and subtitles are supported for
      Matroska": `-map -0:<data stream>`. The timecode survives anyway: ffmpeg's MOV demuxer puts
      `timecode` on the video stream too and the copy keeps it as a TIMECODE tag (where it is only
      on the data stream, `-metadata timecode=HH:MM:SS:FF` adds it to the container).
    - MP4 timed text: "Subtitle codec mov_text is not supported": `-c:s:<n> srt` for that stream.
    - Default flags: when a kind of stream (2 audio tracks, say) has no default track, ffmpeg marks
      the first one default (and an MP4 cover makes it mark the main video default). Any explicit
      `-disposition` switches that off: restate each output stream's own flags,
      `-disposition:<n> <flags>` (`0` for none); plus `-default_mode passthrough` for the muxer (the
      default in this build; `infer` would mark tracks too).
    - Attached pictures (MP4 `covr`, and a Matroska cover attachment, which ffmpeg reads as an
      attached_pic video stream): the Matroska muxer writes them as a one-frame video track (mjpeg
      or png `V_MS/VFW/FOURCC`), not as cover art, and drops the attached_pic flag even with an
      explicit `-disposition`. Keep them by `-map -0:<picture stream>` and re-adding the bytes:
      `-attach cover.png -metadata:s:t:<k> mimetype=image/png -metadata:s:t:<k> filename=cover.png`
      (k counts attachment streams, the source's own come first).
    - Not needed (kept by `-map 0 -c copy` as is): languages, titles, forced/hearing/visual
      impaired/original/comment flags, per-stream and global tags (keys come back upper case),
      chapters and their titles (`-map_metadata 0 -map_chapters 0` are the defaults, explicit
      here), font attachments with filename and mimetype, the display matrix (rotation: written as
      Matroska Projection and read back), field order (FieldOrder), colour description and range
      (Colour), HDR10 mastering display and content light level (Colour/MasteringMetadata, MaxCLL,
      MaxFALL, and the in-band SEI), VFR timestamps (to 1 ms), ADTS AAC (stripped by the automatic
      aac_adtstoasc), audio/subtitle offsets against the video, MPEG-TS/PS start times (the file
      starts at 0, offsets between streams are kept).

    Writes the source's attached pictures into `scratch` (they become Matroska attachments).
    """
    from independent import describe

    info = describe(source, frames=False)
    argv: list[str] = [tools.ffmpeg(), "-nostdin", "-hide_banner", "-v", "error", "-y"]
    if info["format"].split(",")[0] in NO_PTS_FORMATS:
        argv += ["-fflags", "+genpts"]
    argv += ["-i", f(source), "-map", "0", "-map_metadata", "0", "-map_chapters", "0"]
    after: list[str] = ["-c", "copy"]
    attach: list[str] = []
    out = 0
    attachments = len(info["attachments"])
    timecodes = {v for k, v in info["tags"].items() if k.lower() == "timecode"}
    lost_timecodes: set[str] = set()
    for stream in info["streams"]:
        index, tags = stream["index"], stream["tags"]
        stream_timecodes = {v for k, v in tags.items() if k.lower() == "timecode"}
        if stream["type"] == "data":
            # Matroska holds audio, video, subtitles and attachments only; a MOV/MP4 tmcd track's
            # start timecode lives on as a tag.
            argv += ["-map", f"-0:{index}"]
            lost_timecodes |= stream_timecodes
            continue
        if "attached_pic" in stream["dispositions"]:
            # ffmpeg's Matroska muxer writes an attached picture as a one-frame video track; an
            # attachment is what Matroska players show as cover art.
            argv += ["-map", f"-0:{index}"]
            name, mime = PICTURE_NAMES.get(stream["codec"], (f"cover.{stream['codec']}", "image/unknown"))
            name = tags.get("filename", name)
            mime = tags.get("mimetype", mime)
            picture = scratch / f"{out}-{attachments}-{name}"
            picture.write_bytes(_attached_picture(source, index))
            attach += ["-attach", str(picture), f"-metadata:s:t:{attachments}", f"mimetype={mime}",
                       f"-metadata:s:t:{attachments}", f"filename={name}"]  # fmt: skip
            for key, value in tags.items():
                if key.lower() not in ("filename", "mimetype"):
                    attach += [f"-metadata:s:t:{attachments}", f"{key}={value}"]
            attachments += 1
            continue
        timecodes |= stream_timecodes
        if stream["codec"] == "mov_text":
            # Matroska has no MP4 timed text; SRT keeps its text and timing.
            after += [f"-c:{out}", "srt"]
        # Any explicit -disposition turns off ffmpeg's own choice of a default track (it marks the
        # first track of a kind default when the source marks none); restating every stream's
        # own flags keeps them all as they were.
        after += [f"-disposition:{out}", "+".join(stream["dispositions"]) or "0"]
        out += 1
    if lost_timecodes - timecodes:
        after += ["-metadata", f"timecode={sorted(lost_timecodes)[0]}"]
    return [*argv, *after, *attach, "-default_mode", "passthrough", "-f", "matroska", f(output)]


def _attached_picture(source: Path, index: int) -> bytes:
    """The bytes of an attached picture (the one packet its stream has)."""
    import av

    with av.open(str(source)) as container:
        for packet in container.demux(container.streams[index]):
            if packet.size:
                return bytes(packet)
    raise ValueError(f"{source}: stream {index} has no attached picture")


def reference_remux(source: Path, output: Path) -> Path:
    scratch = output.with_name(f"{output.name}.parts")
    scratch.mkdir(parents=True, exist_ok=True)
    runner.run(remux_argv(source, output, scratch), timeout=120)
    return output


SHAPES: tuple[Shape, ...] = (
    Shape("mkv_many_tracks", ".mkv", mkv_many_tracks,
          "H.264, AAC + AC-3, 2 SRT; languages eng/ger/jpn, titles, default/forced/original/comment/"
          "hearing+visual impaired flags, per-stream custom tags, 3 chapters, global title/COMMENT"),
    Shape("mkv_fonts_ass", ".mkv", mkv_fonts_ass,
          "H.264, Opus, styled ASS, 2 TrueType attachments (two mimetypes, one titled)"),
    Shape("mp4_bframes", ".mp4", mp4_bframes,
          "H.264 with 3 B-frames (pts != dts), 2 AAC 44.1 kHz (fra not enabled, eng default), mov_text "
          "fra, creation_time"),
    Shape("mov_timecode", ".mov", mov_timecode, "H.264 + PCM in MOV with a tmcd track 01:00:00:00"),
    Shape("ts_offset", ".ts", ts_offset, "MPEG-TS starting at ~11.4 s, AAC (ADTS) eng + AC-3 spa"),
    Shape("m2ts", ".m2ts", m2ts, "Blu-ray style M2TS (192-byte packets), H.264 + AC-3"),
    Shape("avi_asp_bframes", ".avi", avi_asp_bframes,
          "MPEG-4 ASP (XVID) with 2 B-frames in AVI, MP3: no pts in the container"),
    Shape("webm_vp9", ".webm", webm_vp9, "VP9 + Opus fin in WebM, 160x90"),
    Shape("vfr_24_30", ".mkv", vfr_24_30, "VFR: 1.5 s at 24 fps then 1.5 s at 30 fps, in MKV"),
    Shape("mp4_vfr_jitter", ".mp4", mp4_vfr_jitter,
          "screen-recording timestamps (jitter +-9 ms, a dropped frame every 10) in MP4, mdta tags"),
    Shape("open_gop", ".mkv", open_gop, "H.264 open GOP (non-IDR I-frames with leading B-frames) in MKV"),
    Shape("mpeg2_ps", ".mpg", mpeg2_ps, "MPEG-2 video (open GOP, B-frames) + MP2 in an MPEG-PS (DVD style)"),
    Shape("interlaced_tff", ".mkv", interlaced_tff,
          "interlaced H.264 (MBAFF), top field first, 25 frames/s from 50 fields, MKV FieldOrder"),
    Shape("interlaced_tff_ts", ".ts", interlaced_tff_ts,
          "the same in MPEG-TS (field order from the stream: tt) with MP2 deu"),
    Shape("tenbit_420", ".mkv", tenbit_420, "H.264 High 10, yuv420p10le"),
    Shape("yuv422", ".mkv", yuv422, "H.264 High 4:2:2, yuv422p"),
    Shape("yuv444", ".mkv", yuv444, "H.264 High 4:4:4, yuv444p"),
    Shape("full_range", ".mp4", full_range, "full-range (pc) BT.709 H.264 in MP4"),
    Shape("hdr10", ".mkv", hdr10,
          "HEVC Main 10, BT.2020/PQ, mastering display + content light level (in-band and in MKV)"),
    Shape("rotation", ".mp4", rotation, "MP4 with a display matrix rotating 90 degrees"),
    Shape("cover_art", ".mp4", cover_art, "MP4 with a PNG attached picture (covr)"),
    Shape("mkv_cover_attachment", ".mkv", mkv_cover_attachment, "MKV with a JPEG cover attachment"),
    Shape("audio_before_video", ".mkv", audio_before_video, "Opus starts 0.1 s before the video"),
    Shape("audio_after_video", ".mkv", audio_after_video, "Opus starts 0.2 s after the video"),
)  # fmt: skip
SHAPES_BY_NAME: dict[str, Shape] = {shape.name: shape for shape in SHAPES}
SHAPE_NAMES: Sequence[str] = tuple(SHAPES_BY_NAME)
