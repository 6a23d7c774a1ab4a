"""x265 parameters (`x265_params`, "key=value:key=value"): parsed, and checked before use.

Every source of settings (the command line, the config file, a folder's `.ute.toml`, a file's
sidecar, a pre plugin's overrides) ends up in `EncodeSettings`, whose `__post_init__` calls
`check`: a pure check that refuses parameters that read or write files and names x265 does not
know. `check_with_encoder` goes further and asks the real encoder with a tiny trial encode; it
runs ffmpeg, so it is for the places that may do I/O, and only after `check` has passed.

The key=value form is the one ffmpeg's libx265 wrapper splits (`av_dict_parse_string` with "="
and ":"). Quotes and backslashes are refused, so the pairs UTE checks are exactly the pairs
ffmpeg hands to `x265_param_parse`.
"""

from __future__ import annotations

import functools
import re
import signal
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ute import runner
from ute.errors import CommandError, SettingsError

if TYPE_CHECKING:
    from ute.settings import EncodeSettings

# x265 parameters that read or write a file, by the name x265 reads (after `canonical_name`).
# From x265's `x265_param_parse` (source/common/param.cpp), its command line (source/x265cli.h,
# source/x265.cpp) and the encoder's file opens (source/encoder/encoder.cpp, ratecontrol.cpp),
# Multicorewareinc/x265 master 3f4120d (release 4.2+4) and its older tags, plus `fovea-gaze-file`
# from the bundled ffmpeg's x265 4.3+49. Names x265's own parser does not take (input, recon,
# qpfile, zonefile, ...) are here too, so that they get this message rather than "unknown".
PATH_PARAMS: frozenset[str] = frozenset({
    # x265_param_parse: the value is a file name
    "analysis-save", "analysis-load", "analysis-reuse-file", "csv", "stats", "scaling-list",
    "lambda-file", "dhdr10-info", "nalu-file", "film-grain", "aom-film-grain", "fovea-gaze-file",
    # x265_param_parse: a file with a default name in the current folder
    "pass",  # x265_2pass.log (+ .cutree): written by pass 1, read by pass 2
    "multi-pass-opt-analysis", "multi-pass-opt-distortion",  # x265_analysis.dat in multi-pass
    # older x265 (2.x, 3.x): the analysis file and the modes that save or load it
    "analysis-file", "analysis-mode", "analysis-reuse-mode",
    # x265's command line only: ffmpeg's libx265 does not take them, but they name files
    "input", "output", "recon", "qpfile", "zonefile", "dolby-vision-rpu", "scenecut-qp-config",
    "multiview-config", "abr-ladder", "recon-y4m-exec",
})  # fmt: skip

# Every name `x265_param_parse` accepts, with the `no-` forms of its on/off parameters (those it
# reads with atobool, and those x265cli.h lists as `no-...`). From x265's source/common/param.cpp
# and source/x265cli.h at Multicorewareinc/x265 master 3f4120d (release 4.2+4), leaving out the
# SVT-HEVC names (svt*, input-depth: only in builds with SVT-HEVC, and not x265's own encoder),
# plus fovea-gaze, fovea-delta, fovea-sigma, fovea-gaze-file, selective-mcstf, mcstf-ref-range,
# which the bundled ffmpeg's x265 4.3+49 accepts (found by asking it; no public source yet).
# alpha, format, num-views and scc exist only in builds with those features; `check_with_encoder`
# finds out whether the ffmpeg at hand has them.
KNOWN_PARAMS: frozenset[str] = frozenset({
    "allow-non-conformance", "alpha", "amp", "analysis-load", "analysis-load-reuse-level",
    "analysis-reuse-file", "analysis-reuse-level", "analysis-reuse-mode", "analysis-save",
    "analysis-save-reuse-level", "analyze-src-pics", "annexb", "aom-film-grain", "aq-mode", "aq-motion",
    "aq-strength", "asm", "atc-sei", "aud", "b-adapt", "b-intra", "b-pyramid", "bframe-bias", "bframes",
    "bitrate", "cbqpoffs", "chromaloc", "chunk-end", "chunk-start", "cip", "cll", "colormatrix",
    "colorprim", "const-vbv", "constrained-intra", "copy-pic", "cplxblur", "cra-nal", "crf", "crf-max",
    "crf-min", "crop-rect", "crqpoffs", "csv", "csv-log-level", "ctu", "ctu-info", "cu-lossless",
    "cu-stats", "cutree", "deblock", "dhdr10-info", "dhdr10-opt", "display-window",
    "dolby-vision-profile", "dup-threshold", "dynamic-rd", "dynamic-refine", "early-skip", "eob", "eos",
    "fades", "fast-intra", "field", "film-grain", "force-flush", "format", "fovea-delta", "fovea-gaze",
    "fovea-gaze-file", "fovea-sigma", "fps", "frame-dup", "frame-rc", "frame-threads", "gop-lookahead",
    "hash", "hdr", "hdr-opt", "hdr10", "hdr10-opt", "hevc-aq", "high-tier", "hist-scenecut", "hme",
    "hme-range", "hme-search", "hrd", "hrd-concat", "idr-recovery-sei", "info", "input-csp",
    "input-res", "interlace", "intra-refresh", "ip-factor", "ipratio", "keyint", "lambda-file", "level",
    "level-idc", "lft", "limit-modes", "limit-refs", "limit-sao", "limit-tu", "log", "log-level",
    "log2-max-poc-lsb", "lookahead-slices", "lookahead-threads", "lossless", "lowpass-dct",
    "masking-strength", "master-display", "max-ausize-factor", "max-cll", "max-luma", "max-merge",
    "max-tu-size", "max-vbv-fullness", "mcstf", "mcstf-ref-range", "me", "merange", "min-cu-size",
    "min-keyint", "min-luma", "min-vbv-fullness", "multi-pass-opt-analysis",
    "multi-pass-opt-distortion", "multi-pass-opt-rps", "nalu-file", "nr-inter", "nr-intra", "num-views",
    "numa-pools", "open-gop", "opt-cu-delta-qp", "opt-qp-pps", "opt-ref-list-length-pps", "overscan",
    "pass", "pb-factor", "pbratio", "pic-struct", "pme", "pmode", "pools", "psnr", "psy-rd", "psy-rdoq",
    "qblur", "qcomp", "qg-size", "qp", "qp-adaptation-range", "qpmax", "qpmin", "qpstep", "radl",
    "range", "rc-grain", "rc-lookahead", "rd", "rd-refine", "rdoq", "rdoq-level", "rdpenalty", "rect",
    "ref", "refine-analysis-type", "refine-ctu-distortion", "refine-inter", "refine-intra", "refine-mv",
    "repeat-headers", "rskip", "rskip-edge-threshold", "sao", "sao-non-deblock", "sar", "sbrc",
    "scale-factor", "scaling-list", "scc", "scenecut", "scenecut-aware-qp", "scenecut-bias",
    "selective-mcstf", "selective-sao", "signhide", "single-sei", "slices", "slow-firstpass",
    "splitrd-skip", "ssim", "ssim-rd", "stats", "strict-cbr", "strong-intra-smoothing", "subme",
    "temporal-layers", "temporal-mvp", "threaded-me", "total-frames", "transfer", "tskip", "tskip-fast",
    "tu-inter-depth", "tu-intra-depth", "uhd-bd", "vbv-bufsize", "vbv-end", "vbv-end-fr-adj",
    "vbv-init", "vbv-live-multi-pass", "vbv-maxrate", "video-signal-type-preset", "videoformat",
    "vui-hrd-info", "vui-timing-info", "weightb", "weightp", "wpp", "zones",
    # the no- forms
    "no-allow-non-conformance", "no-alpha", "no-amp", "no-analyze-src-pics", "no-annexb",
    "no-aq-motion", "no-asm", "no-aud", "no-b-adapt", "no-b-intra", "no-b-pyramid", "no-cip", "no-cll",
    "no-const-vbv", "no-constrained-intra", "no-copy-pic", "no-cra-nal", "no-cu-lossless",
    "no-cu-stats", "no-cutree", "no-deblock", "no-dhdr10-opt", "no-dynamic-refine", "no-early-skip",
    "no-eob", "no-eos", "no-fades", "no-fast-intra", "no-field", "no-frame-dup", "no-frame-rc",
    "no-hdr", "no-hdr-opt", "no-hdr10", "no-hdr10-opt", "no-hevc-aq", "no-high-tier",
    "no-hist-scenecut", "no-hme", "no-hrd", "no-hrd-concat", "no-idr-recovery-sei", "no-info",
    "no-interlace", "no-intra-refresh", "no-lft", "no-limit-modes", "no-limit-sao", "no-lossless",
    "no-lowpass-dct", "no-mcstf", "no-multi-pass-opt-analysis", "no-multi-pass-opt-distortion",
    "no-multi-pass-opt-rps", "no-open-gop", "no-opt-cu-delta-qp", "no-opt-qp-pps",
    "no-opt-ref-list-length-pps", "no-pme", "no-pmode", "no-psnr", "no-psy-rd", "no-psy-rdoq",
    "no-rc-grain", "no-rd-refine", "no-rdoq", "no-rdoq-level", "no-rect", "no-repeat-headers", "no-sao",
    "no-sao-non-deblock", "no-sbrc", "no-scenecut", "no-selective-mcstf", "no-signhide",
    "no-single-sei", "no-slow-firstpass", "no-splitrd-skip", "no-ssim", "no-ssim-rd", "no-strict-cbr",
    "no-strong-intra-smoothing", "no-temporal-mvp", "no-threaded-me", "no-tskip", "no-tskip-fast",
    "no-uhd-bd", "no-vbv-live-multi-pass", "no-vui-hrd-info", "no-vui-timing-info", "no-weightb",
    "no-weightp", "no-wpp",
})  # fmt: skip

# x265 takes both names for its log level; UTE adds log-level=info itself (commands.x265_params).
LOG_LEVEL_PARAMS = frozenset({"log-level", "log"})
THREAD_POOL_PARAMS = frozenset({"pools", "numa-pools"})
LOG_LEVEL_VALUES = frozenset(
    {"-1", "0", "1", "2", "3", "4", "none", "error", "warning", "info", "debug", "full"}
)

# The trial encode: two tiny frames, thrown away.
TRIAL_SOURCE = "testsrc2=s=64x64:r=25"
TRIAL_FRAMES = 2
TRIAL_TIMEOUT_SECONDS = 60.0
# How a trial encode ends when something else ends it (the OOM killer, a stop, a `pkill`): killed
# by the signal, or, where ffmpeg caught it (SIGTERM, SIGINT) to close its output, status 255. No
# answer about the parameters, so it is asked again, this many times in all. A crash (SIGSEGV,
# SIGABRT) or a refusal (x265's errors end in status 183) is the encoder's own answer.
STOPPED_FROM_OUTSIDE = frozenset({-signal.SIGKILL, -signal.SIGTERM, -signal.SIGINT, -signal.SIGHUP, 255})
TRIAL_TRIES = 3

_NAME = re.compile(r"[A-Za-z0-9_-]+")
_UNKNOWN = re.compile(r"Unknown option: (?P<name>.*)\.$")
_INVALID = re.compile(r"Invalid value for (?P<name>[^:]*): (?P<value>.*)\.$")
_ENCODER_SAID = re.compile(r"^(?:x265 \[error\]: |\[libx265 @ [^]]*\] )(?P<text>.*)$")


def parse(params: str) -> list[tuple[str, str]]:
    """The (name, value) pairs of "key=value:key=value", in order; empty parts are skipped."""
    pairs = []
    for part in params.split(":"):
        if not part:
            continue
        name, equals, value = part.partition("=")
        if not equals or not _NAME.fullmatch(name):
            raise SettingsError(
                f"x265 parameter {part!r} is not of the form key=value (join several with ':')"
            )
        if any(char in "'\"\\" or ord(char) < 32 for char in value):
            raise SettingsError(
                f"x265 parameter {part!r}: quotes, backslashes and control characters are not allowed "
                "in a value"
            )
        pairs.append((name, value))
    return pairs


def spelled_name(name: str) -> str:
    """The name as x265 reads it: without a leading "--", with "-" for "_", and "noX" as "no-X"."""
    name = name.removeprefix("--").replace("_", "-")
    if name.startswith("no") and not name.startswith("no-"):
        name = "no-" + name[2:]
    return name


def canonical_name(name: str) -> str:
    """The parameter a name sets: x265 reads "no-csv", "nocsv" and "--no_csv" all as "csv"."""
    return spelled_name(name).removeprefix("no-")


def named(params: str) -> set[str]:
    """The parameters the string sets, by the names x265 reads them as (canonical_name). Pure."""
    return {canonical_name(name) for name, _ in parse(params)}


def check(params: str) -> None:
    """Refuse malformed pairs, parameters that touch files, and names x265 does not know. Pure."""
    for name, value in parse(params):
        base = canonical_name(name)
        if base in PATH_PARAMS:
            as_read = f" (x265 reads it as {base!r})" if base != name else ""
            raise SettingsError(
                f"x265 parameter {name!r}{as_read} reads or writes a file, which UTE does not allow "
                "(it would let a setting touch files outside UTE's folders)"
            )
        if spelled_name(name) not in KNOWN_PARAMS:
            raise SettingsError(f"unknown x265 parameter {name!r} (see `x265 --fullhelp`)")
        if base in LOG_LEVEL_PARAMS and value not in LOG_LEVEL_VALUES:
            raise SettingsError(f"x265 parameter {name!r} has an invalid value {value!r}: use one of "
                                "none, error, warning, info, debug, full")  # fmt: skip


def check_with_encoder(ffmpeg: str, settings: EncodeSettings) -> None:
    """Refuse x265 parameters (with the preset and crf) that this ffmpeg's libx265 does not take.

    Runs a two-frame trial encode of a 64x64 test picture into nothing; the answer is cached per
    ffmpeg and settings. Without parameters (or only a log level, which check() vets) there is
    nothing to ask: the preset and crf were checked when the settings were made, and ffmpeg's
    libx265 when it was found. A failure to run ffmpeg at all is a CommandError, not a SettingsError,
    and so is a trial encode that something else killed each time it was asked.
    """
    check(settings.x265_params)  # no parameter that touches a file ever reaches the encoder
    if named(settings.x265_params) <= LOG_LEVEL_PARAMS:
        return
    problem = _trial_encode(ffmpeg, settings.preset, settings.crf, settings.x265_params)
    if problem:
        raise SettingsError(problem)


@functools.cache
def _trial_encode(ffmpeg: str, preset: str, crf: float, params: str) -> str | None:
    """What is wrong with the parameters, as one line, or None when the encoder takes them."""
    # x265 logs to stderr past ffmpeg's -loglevel; at "error" the warnings stay within the tail
    # that runner keeps. check() has already vetted any log level the parameters set.
    pairs = [f"{name}={value}" for name, value in parse(params)
             if canonical_name(name) not in LOG_LEVEL_PARAMS]  # fmt: skip
    argv = [
        ffmpeg, "-nostdin", "-hide_banner", "-nostats", "-loglevel", "warning",
        "-f", "lavfi", "-i", TRIAL_SOURCE, "-frames:v", str(TRIAL_FRAMES),
        "-c:v", "libx265", "-preset", preset, "-crf", f"{crf:g}",
        "-x265-params", ":".join([*pairs, "log-level=error"]),
        "-f", "null", "-",
    ]  # fmt: skip
    for _ in range(TRIAL_TRIES):
        # In an empty folder of its own, so that a file the encoder writes shows (and goes away).
        with tempfile.TemporaryDirectory(prefix="ute-x265-trial-") as folder:
            result = runner.run(argv, timeout=TRIAL_TIMEOUT_SECONDS, check=False, cwd=Path(folder))
            written = sorted(path.name for path in Path(folder).iterdir())
        if result.returncode not in STOPPED_FROM_OUTSIDE:
            break
    else:  # not an answer about the parameters: the file may be tried again (not cached)
        raise CommandError(f"the trial encode of x265 parameters {params!r} was stopped from "
                           f"outside {TRIAL_TRIES} times ({runner.describe_failure(result)}); is memory "
                           "short?")  # fmt: skip
    for line in result.stderr_tail:
        if match := _UNKNOWN.search(line):
            return f"unknown x265 parameter {match['name']!r} (this ffmpeg's libx265 does not know it)"
        if match := _INVALID.search(line):
            return f"x265 parameter {match['name']!r} has an invalid value {match['value']!r}"
    if written:
        return (f"x265 parameters {params!r} make the encoder write files ({', '.join(written)}), "
                "which UTE does not allow")  # fmt: skip
    if result.returncode != 0:
        said = [match["text"].strip() for line in result.stderr_tail if (match := _ENCODER_SAID.match(line))]
        detail = " | ".join(said) if said else runner.describe_failure(result)
        return f"the encoder refuses x265 parameters {params!r} (preset {preset}, crf {crf:g}): {detail}"
    return None
