"""What a chunk border costs: `ute encode` against one plain libx265 encode with its keyframes (IDR,
closed GOP) exactly where ute's chunks start, scored per frame with VMAF and PSNR against the
source, on both sides of every cut, and with the bits each frame took.

    python bench/quality_bench.py [--seconds 60] [--size 640x360] [--preset fast] [--crf 28]
                                  [--chunk-frames 240] [--x265-params K=V:K=V] [--ute-x265-params K=V]

Four encodes of the same lossless clip at the same preset and CRF:

- `ffmpeg`: one plain `ffmpeg -c:v libx265` (x265's own keyframes: open GOP, CRA every 250 frames);
- `ffmpeg, same keyframes`: the same with the chunks' keyframe interval, `keyint=N:min-keyint=N`
  and `open-gop=0`: an IDR at every chunk start, nowhere else forced. The chunks must all be N
  frames long (the last may differ); the clip's GOP is 48 frames, so --chunk-frames should be
  a multiple of 48. This is the baseline the issue's targets are checked against;
- `ffmpeg, forced keyframes`: the same IDRs forced instead, `-force_key_frames expr:eq(n,S)+...`
  (frame indices from `ute plan --json`) with `open-gop=0` (without it x265 codes a forced frame
  as a CRA, even with libx265's `-forced-idr 1`, which is passed too). Measured, not designed:
  x265 codes the last P frame before a forced keyframe like any other P frame, where before a
  natural keyframe, as at a chunk's end, it gets far fewer bits (medium, crf 24: 3 dB and a third
  of its bits less; with cutree=0 the two encodes are the same), so this encode is shown for
  comparison but is not the baseline;
- `ute`: `ute encode --chunk-frames N --workers 2`: each chunk is a separate x265 run fed exactly
  the chunk's frames, so its first frame is an IDR and its last ones are coded with no future.

x265 may add scenecut keyframes in any of them (min-keyint=N makes them plain I frames in the
baseline, ute's chunk encoders may make them keyframes); each encode's keyframes are listed, read
from the NAL unit types of its packets, with whether an IDR lies at every chunk start.

The targets: the mean PSNR of the 5 frames before each cut within 0.2 dB of the baseline's, the
file within +0.5% in size and 0.2 in mean VMAF ("within" = no worse than; better counts as met).
For every cut (each chunk start but the first) the table has the mean PSNR/VMAF and the bits of
the 5 frames before and of the 5 frames from the cut on (bits per cut: the sum over those frames,
averaged over the cuts), and for the whole clip the worst 10-frame window: the lowest sliding
10-frame mean, with the frame it starts on. With x265's mini-GOPs of up to 5 frames, a 5-frame
window holds one P frame or two, so the before/after figures move with where the P frames fall.

`--x265-params` goes to all four encodes (to see how a setting moves the border effect when the
baseline has it too); `--ute-x265-params` to ute's chunk encoders only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

import av

from ute import runner, tools

SIDE = 5  # frames on each side of a cut
WINDOW = 10  # frames in the sliding window whose worst mean is reported
BEFORE, AFTER = range(-SIDE, 0), range(SIDE)  # offsets from a cut
BASELINE = "ffmpeg, same keyframes"
FORCED = "ffmpeg, forced keyframes"
ENCODES = ("ffmpeg", FORCED, BASELINE, "ute")
KEYFRAME_NALS = {16: "BLA", 17: "BLA", 18: "BLA", 19: "IDR", 20: "IDR", 21: "CRA"}  # HEVC NAL unit types


@dataclass(frozen=True)
class Encode:
    name: str
    size: int
    vmaf: list[float]  # per frame, presentation order
    psnr: list[float]  # luma
    bits: list[int]
    keyframes: dict[int, str]  # frame index -> IDR, CRA or BLA


@dataclass(frozen=True)
class Side:
    psnr: float
    vmaf: float
    kbits: float  # per cut, the SIDE frames together


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--crf", default="28")
    parser.add_argument("--chunk-frames", default="240", help="a multiple of 48, the source's GOP")
    parser.add_argument("--x265-params", default="", help="extra x265 parameters for all four encodes")
    parser.add_argument("--ute-x265-params", default="", help="extra x265 parameters for ute only")
    args = parser.parse_args()
    ffmpeg = tools.ffmpeg()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        source = folder / "source.mkv"
        # A continuous zoom: every frame depends on the one before, as in real footage.
        runner.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i",
                    f"mandelbrot=s={args.size}:r=24,trim=duration={args.seconds}", "-c:v", "libx264",
                    "-preset", "ultrafast", "-qp", "0", "-g", "48", f"file:{source}"])  # fmt: skip
        ute = [sys.executable, "-m", "ute.cli", "--log-level", "WARNING"]
        planned = subprocess.run([*ute, "plan", str(source), "--json", "--chunk-frames", args.chunk_frames],
                                 check=True, capture_output=True)  # fmt: skip
        plan = json.loads(planned.stdout)
        starts = [chunk["start"] for chunk in plan["chunks"]]
        cuts = starts[1:]
        if not cuts:
            sys.exit("one chunk only: nothing to measure; use a longer clip or shorter chunks")
        interval = starts[1]
        if any(start != index * interval for index, start in enumerate(starts)):
            sys.exit(f"chunks of unequal length {starts}: no keyframe interval matches them")
        extra = [p for p in args.x265_params.split(":") if p]
        encoder = ["-v", "error", "-i", f"file:{source}", "-c:v", "libx265", "-preset", args.preset,
                   "-crf", args.crf]  # fmt: skip
        outputs = {name: folder / f"{index}.mkv" for index, name in enumerate(ENCODES)}
        runner.run([ffmpeg, *encoder, "-x265-params", ":".join(["log-level=error", *extra]),
                    f"file:{outputs['ffmpeg']}"])  # fmt: skip
        closed = ["log-level=error", "open-gop=0"]
        runner.run([ffmpeg, *encoder, "-x265-params",
                    ":".join([*closed, f"keyint={interval}", f"min-keyint={interval}", *extra]),
                    f"file:{outputs[BASELINE]}"])  # fmt: skip
        forced = "expr:" + "+".join(f"eq(n,{start})" for start in starts)
        runner.run([ffmpeg, *encoder, "-force_key_frames", forced, "-forced-idr", "1",
                    "-x265-params", ":".join([*closed, *extra]), f"file:{outputs[FORCED]}"])  # fmt: skip
        ute_params = ":".join(p for p in (args.x265_params, args.ute_x265_params) if p)
        subprocess.run([*ute, "encode", str(source), "-o", str(outputs["ute"]), "--preset", args.preset,
                        "--crf", args.crf, "--chunk-frames", args.chunk_frames, "--workers", "2",
                        *(["--x265-params", ute_params] if ute_params else [])], check=True)  # fmt: skip
        encodes = [_measure(ffmpeg, name, output, source, folder) for name, output in outputs.items()]

    print(f"clip: mandelbrot {args.size}, {plan['frames']} frames at 24 fps, {len(starts)} chunks, "
          f"cuts at {cuts}, preset {args.preset}, crf {args.crf}, x265 params "
          f"{args.x265_params or '-'}, ute only {args.ute_x265_params or '-'}")  # fmt: skip
    for encode in encodes:
        print(_keyframe_line(encode, starts))
    print()
    base = next(e for e in encodes if e.name == BASELINE)
    print(f"{'':24} {'':>9} {'size vs':>8} {'mean':>6} {'mean':>6}   {SIDE} before each cut"
          f"      {SIDE} from each cut        worst {WINDOW}-frame window")  # fmt: skip
    side = f"{'PSNR':>6} {'VMAF':>6} {'kbit':>6}"
    print(f"{'encode':24} {'bytes':>9} {'same kf':>8} {'VMAF':>6} {'PSNR':>6}   {side}   {side}   "
          f"{'PSNR':>6} {'at':>5} {'VMAF':>6} {'at':>5}")  # fmt: skip
    for e in encodes:
        before, after = _side(e, cuts, BEFORE), _side(e, cuts, AFTER)
        (worst_psnr, psnr_at), (worst_vmaf, vmaf_at) = _worst(e.psnr), _worst(e.vmaf)
        print(f"{e.name:24} {e.size:9d} {_percent(e.size, base.size):>8} {mean(e.vmaf):6.2f} "
              f"{mean(e.psnr):6.2f}   {before.psnr:6.2f} {before.vmaf:6.2f} {before.kbits:6.1f}   "
              f"{after.psnr:6.2f} {after.vmaf:6.2f} {after.kbits:6.1f}   {worst_psnr:6.2f} {psnr_at:5d} "
              f"{worst_vmaf:6.2f} {vmaf_at:5d}")  # fmt: skip
    print()
    chunked = next(e for e in encodes if e.name == "ute")
    plain = next(e for e in encodes if e.name == "ffmpeg")
    _targets(chunked, base, cuts)
    print()
    forced = next(e for e in encodes if e.name == FORCED)
    for one, other in ((chunked, plain), (base, plain), (forced, base)):
        _deltas(one, other, cuts)


def _measure(ffmpeg: str, name: str, output: Path, source: Path, folder: Path) -> Encode:
    vmaf, psnr = _scores(ffmpeg, output, source, folder / f"{output.stem}.json")
    bits, keyframes = _frames(output)
    if len(bits) != len(vmaf):
        raise SystemExit(f"{name}: {len(bits)} packets but {len(vmaf)} scored frames")
    return Encode(name, output.stat().st_size, vmaf, psnr, bits, keyframes)


def _scores(ffmpeg: str, distorted: Path, reference: Path, log: Path) -> tuple[list[float], list[float]]:
    """Per-frame VMAF and PSNR (luma) of distorted against reference."""
    runner.run([ffmpeg, "-v", "error", "-i", f"file:{distorted}", "-i", f"file:{reference}",
                "-lavfi", f"[0:v][1:v]libvmaf=feature=name=psnr:log_fmt=json:log_path={log}:n_threads=2",
                "-f", "null", "-"])  # fmt: skip
    frames = json.loads(log.read_text())["frames"]
    return [f["metrics"]["vmaf"] for f in frames], [f["metrics"]["psnr_y"] for f in frames]


def _frames(path: Path) -> tuple[list[int], dict[int, str]]:
    """Bits of each frame in presentation order, and which frames are keyframes of what kind.

    The kind is the type of the packet's first coded-slice NAL unit (Matroska stores HEVC as
    length-prefixed NAL units, the length's size given in the hvcC header)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        extradata = stream.codec_context.extradata
        length_size = (extradata[21] & 3) + 1 if extradata else 4
        packets = sorted((p for p in container.demux(stream) if p.size), key=lambda p: p.pts or 0)
        bits, keyframes = [], {}
        for index, packet in enumerate(packets):
            bits.append(packet.size * 8)
            data, at = bytes(packet), 0
            while at + length_size < len(data):
                nal_type = (data[at + length_size] >> 1) & 0x3F
                if nal_type < 32:  # the first coded slice
                    if nal_type in KEYFRAME_NALS:
                        keyframes[index] = KEYFRAME_NALS[nal_type]
                    break
                at += length_size + int.from_bytes(data[at : at + length_size], "big")
    return bits, keyframes


def _keyframe_line(encode: Encode, starts: list[int]) -> str:
    missing = [s for s in starts if encode.keyframes.get(s) != "IDR"]
    others = [f"{i} {kind}" for i, kind in sorted(encode.keyframes.items()) if i not in starts]
    at_starts = "IDR at every chunk start" if not missing else f"no IDR at chunk starts {missing}"
    return f"keyframes, {encode.name}: {at_starts}; elsewhere: {', '.join(others) or 'none'}"


def _side(encode: Encode, cuts: list[int], offsets: range) -> Side:
    frames = [cut + k for cut in cuts for k in offsets if 0 <= cut + k < len(encode.psnr)]
    return Side(psnr=mean(encode.psnr[i] for i in frames), vmaf=mean(encode.vmaf[i] for i in frames),
                kbits=sum(encode.bits[i] for i in frames) / len(cuts) / 1000)  # fmt: skip


def _worst(values: list[float]) -> tuple[float, int]:
    """The lowest mean of WINDOW consecutive frames, and the frame that window starts on."""
    means = [mean(values[i : i + WINDOW]) for i in range(max(1, len(values) - WINDOW + 1))]
    lowest = min(range(len(means)), key=means.__getitem__)
    return means[lowest], lowest


def _percent(value: float, reference: float) -> str:
    return f"{(value / reference - 1) * 100:+.2f}%"


def _targets(chunked: Encode, base: Encode, cuts: list[int]) -> None:
    """The issue's targets for ute against the single encode with the same keyframes."""
    before, base_before = _side(chunked, cuts, BEFORE), _side(base, cuts, BEFORE)
    after, base_after = _side(chunked, cuts, AFTER), _side(base, cuts, AFTER)
    checks = [
        (f"{SIDE} frames before each cut", before.psnr, base_before.psnr, " dB", -0.2, "within 0.2 dB"),
        ("mean VMAF", mean(chunked.vmaf), mean(base.vmaf), "", -0.2, "within 0.2"),
    ]
    for label, ours, theirs, unit, floor, target in checks:
        delta = ours - theirs
        print(f"{label}: ute {ours:.2f}{unit} vs {theirs:.2f}{unit} ({BASELINE}): {delta:+.2f}{unit} "
              f"(target {target}): {'met' if delta >= floor else 'NOT met'}")  # fmt: skip
    grown = chunked.size / base.size - 1
    print(f"size: ute {chunked.size} B vs {base.size} B ({BASELINE}): {grown * 100:+.2f}% "
          f"(target within +0.5%): {'met' if grown <= 0.005 else 'NOT met'}")  # fmt: skip
    print(f"also: {SIDE} before each cut VMAF {before.vmaf - base_before.vmaf:+.2f}, bits "
          f"{_percent(before.kbits, base_before.kbits)}; {SIDE} from each cut PSNR "
          f"{after.psnr - base_after.psnr:+.2f} dB, VMAF {after.vmaf - base_after.vmaf:+.2f}, bits "
          f"{_percent(after.kbits, base_after.kbits)}")  # fmt: skip
    gap_psnr, psnr_at = _worst([ours - theirs for ours, theirs in zip(chunked.psnr, base.psnr, strict=True)])
    gap_vmaf, vmaf_at = _worst([ours - theirs for ours, theirs in zip(chunked.vmaf, base.vmaf, strict=True)])
    print(f"worst {WINDOW}-frame window of ute minus {BASELINE}: PSNR {gap_psnr:+.2f} dB from frame "
          f"{psnr_at}, VMAF {gap_vmaf:+.2f} from frame {vmaf_at}")  # fmt: skip


def _deltas(one: Encode, other: Encode, cuts: list[int]) -> None:
    """One encode's figures against another's, no target: e.g. ute against the plain encode."""
    parts = []
    for label, offsets in ((f"{SIDE} before each cut", BEFORE), (f"{SIDE} from each cut", AFTER)):
        ours, theirs = _side(one, cuts, offsets), _side(other, cuts, offsets)
        parts.append(f"{label} {ours.psnr:.2f} vs {theirs.psnr:.2f} dB ({ours.psnr - theirs.psnr:+.2f}), "
                     f"VMAF {ours.vmaf - theirs.vmaf:+.2f}, "
                     f"bits {_percent(ours.kbits, theirs.kbits)}")  # fmt: skip
    print(f"{one.name} vs {other.name}: size {_percent(one.size, other.size)}, mean VMAF "
          f"{mean(one.vmaf) - mean(other.vmaf):+.2f}, mean PSNR {mean(one.psnr) - mean(other.psnr):+.2f} dB; "
          + "; ".join(parts))  # fmt: skip


if __name__ == "__main__":
    main()
