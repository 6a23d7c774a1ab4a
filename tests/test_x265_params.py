"""x265 parameters: parsed, and refused when they touch files or x265 does not know them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from media import make_clip

from ute import config, plugins, runner, tools
from ute.config import Layer
from ute.errors import CommandError, SettingsError
from ute.settings import EncodeSettings
from ute.x265_params import (
    KNOWN_PARAMS,
    PATH_PARAMS,
    STOPPED_FROM_OUTSIDE,
    TRIAL_TRIES,
    canonical_name,
    check,
    check_with_encoder,
    parse,
)

ROOT = Path(__file__).resolve().parent.parent
REQUIRED_PATH_PARAMS = {
    "analysis-save", "analysis-load", "analysis-reuse-file", "csv", "stats", "qpfile", "zonefile",
    "scaling-list", "lambda-file", "dolby-vision-rpu", "recon",
}  # fmt: skip
GOOD = ["aq-mode=3:psy-rd=1", "lossless=1", "no-sao=1", "keyint=48", "log-level=info:aq-mode=3",
        "nosao=1", "aq_mode=3", "--aq-mode=3", "bframes=8:b-adapt=2:rc-lookahead=40", ""]  # fmt: skip
NAME_CHARS = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=1,
                     max_size=20)  # fmt: skip
VALUE_CHARS = st.text(st.characters(blacklist_characters=":'\"\\", min_codepoint=32), max_size=20)


def path_message(name: str) -> str:
    return rf"x265 parameter '{name}'.* reads or writes a file, which UTE does not allow"


# parsing


def test_parse_gives_the_pairs_in_order_and_skips_empty_parts() -> None:
    assert parse("aq-mode=3::psy-rd=1.5:zones=0,10,q=20:") == [
        ("aq-mode", "3"), ("psy-rd", "1.5"), ("zones", "0,10,q=20")
    ]  # fmt: skip
    assert parse("") == []


@given(st.lists(st.tuples(NAME_CHARS, VALUE_CHARS), max_size=6))
def test_parse_reads_back_what_was_joined(pairs: list[tuple[str, str]]) -> None:
    assert parse(":".join(f"{name}={value}" for name, value in pairs)) == pairs


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("no-sao", "'no-sao' is not of the form key=value"),  # ffmpeg refuses a bare name
        ("aq mode=3", "'aq mode=3' is not of the form key=value"),
        ("=3", "not of the form key=value"),
        ("keyint='48'", "quotes, backslashes and control characters are not allowed"),
        ("keyint=4\\8", "quotes, backslashes and control characters are not allowed"),
    ],
)
def test_malformed_parameters_are_refused(params: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        check(params)


@pytest.mark.parametrize(
    ("name", "canonical"),
    [("csv", "csv"), ("no-csv", "csv"), ("nocsv", "csv"), ("--no_csv", "csv"),
     ("analysis_save", "analysis-save"), ("--aq-mode", "aq-mode"), ("nr-intra", "nr-intra")],
)  # fmt: skip
def test_names_are_read_the_way_x265_reads_them(name: str, canonical: str) -> None:
    assert canonical_name(name) == canonical


# parameters that touch files


def test_the_path_parameters_cover_every_file_option() -> None:
    assert REQUIRED_PATH_PARAMS <= PATH_PARAMS
    assert {"dhdr10-info", "nalu-file", "film-grain", "aom-film-grain", "pass"} <= PATH_PARAMS


@pytest.mark.parametrize("name", sorted(PATH_PARAMS))
def test_every_path_parameter_is_refused_naming_it(name: str) -> None:
    with pytest.raises(SettingsError, match=path_message(name)) as raised:
        EncodeSettings(x265_params=f"aq-mode=3:{name}=/tmp/ute-x265-target")
    assert "\n" not in str(raised.value)


@given(
    name=st.sampled_from(sorted(PATH_PARAMS)),
    dashes=st.sampled_from(["", "--"]),
    negation=st.sampled_from(["", "no-", "no"]),
    underscores=st.booleans(),
    value=VALUE_CHARS,
)
def test_every_spelling_x265_takes_for_a_path_parameter_is_refused(
    name: str, dashes: str, negation: str, underscores: bool, value: str
) -> None:
    spelled = dashes + negation + (name.replace("-", "_") if underscores else name)
    with pytest.raises(SettingsError, match="reads or writes a file"):
        check(f"{spelled}={value}")


@given(st.text(max_size=60))
def test_anything_check_lets_through_is_known_and_touches_no_file(params: str) -> None:
    try:
        check(params)
    except SettingsError:
        return
    for name, _value in parse(params):
        assert canonical_name(name) not in PATH_PARAMS
        assert canonical_name(name) in KNOWN_PARAMS


def sidecar_sources(tmp_path: Path, toml: str) -> dict[str, list[Layer]]:
    """The same TOML as each kind of settings file, read the way UTE reads it."""
    (tmp_path / "ute.toml").write_text(toml)
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / ".ute.toml").write_text(toml)
    other = tmp_path / "other"
    other.mkdir()
    (other / "clip.mkv.ute.toml").write_text(toml)
    return {
        "ute.toml": config.config_layer(tmp_path / "ute.toml"),
        ".ute.toml": config.file_layers(folder / "clip.mkv"),
        "clip.mkv.ute.toml": config.file_layers(other / "clip.mkv"),
    }


def test_a_path_parameter_is_refused_from_every_settings_file(tmp_path: Path) -> None:
    target = tmp_path / "overwritten.dat"
    sources = sidecar_sources(tmp_path, f'crf = 20\nx265_params = "analysis-save={target}"\n')
    for file_name, layers in sources.items():
        assert len(layers) == 1
        with pytest.raises(SettingsError, match=path_message("analysis-save")) as raised:
            config.apply(EncodeSettings(), layers)
        assert file_name in str(raised.value)
    assert not target.exists()


def test_a_path_parameter_is_refused_from_the_command_line_layer() -> None:
    with pytest.raises(SettingsError, match=r"^the command line: " + path_message("csv")):
        config.apply(EncodeSettings(), [Layer("the command line", {"x265_params": "csv=/tmp/x.csv"})])


def test_a_path_parameter_is_refused_from_pre_plugin_overrides(tmp_path: Path) -> None:
    plugin = tmp_path / "plugins" / "pre" / "01_stats.sh"
    plugin.parent.mkdir(parents=True)
    plugin.write_text('echo \'{"x265_params": "stats=/tmp/ute-stats.log"}\' > "$UTE_OVERRIDES"\n')
    result = plugins.run_pre(tmp_path / "plugins", file_id="j", source=tmp_path / "clip.mkv",
                             work_dir=tmp_path / "work")  # fmt: skip
    assert result.overrides is not None
    with pytest.raises(SettingsError, match=r"overrides written by pre plugins.*'stats'.* reads or writes"):
        config.apply(EncodeSettings(), [result.overrides])


def test_the_cli_refuses_a_path_parameter_before_touching_anything(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "clip.mkv", seconds=0.5, size="64x64")
    target = tmp_path / "analysis.dat"
    output = tmp_path / "out.mkv"
    result = subprocess.run(
        [sys.executable, "-m", "ute.cli", "encode", str(source), "-o", str(output),
         "--x265-params", f"analysis-save={target}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'analysis-save'" in lines[0] and "reads or writes a file" in lines[0]
    assert not target.exists() and not target.with_name(target.name + ".temp").exists()
    assert not output.exists()


# unknown and known names


@pytest.mark.parametrize("params", ["bogus=1", "aq-mode=3:bogus=1", "preset=slow", "CSV=1", "no-keyint=1"])
def test_an_unknown_name_is_refused_naming_it(params: str) -> None:
    name = params.rsplit(":", 1)[-1].split("=")[0]
    with pytest.raises(SettingsError, match=rf"^unknown x265 parameter '{name}' \(see `x265 --fullhelp`\)$"):
        check(params)


def test_an_unknown_name_is_refused_from_a_sidecar(tmp_path: Path) -> None:
    (tmp_path / "clip.mkv.ute.toml").write_text('x265_params = "bogus=1"\n')
    with pytest.raises(SettingsError, match=r"clip.mkv.ute.toml: unknown x265 parameter 'bogus'"):
        config.apply(EncodeSettings(), config.file_layers(tmp_path / "clip.mkv"))


@pytest.mark.parametrize("params", GOOD)
def test_known_parameters_are_accepted(params: str) -> None:
    assert EncodeSettings(x265_params=params).x265_params == params


def test_known_parameters_come_with_their_no_forms() -> None:
    assert {"sao", "no-sao", "log-level", "keyint", "aq-mode", "psy-rd", "no-psy-rd"} <= KNOWN_PARAMS
    assert all(name[3:] in KNOWN_PARAMS for name in KNOWN_PARAMS if name.startswith("no-"))


@pytest.mark.parametrize("value", ["info", "error", "none", "full", "-1", "4"])
def test_the_log_level_ute_sets_stays_allowed(value: str) -> None:
    check(f"log-level={value}")


def test_a_bad_log_level_is_refused() -> None:
    with pytest.raises(SettingsError, match="'log-level' has an invalid value 'loud'"):
        check("log-level=loud")


# the trial encode


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("aq-mode=99", r"refuses x265 parameters 'aq-mode=99' .*Aq-Mode is out of range"),
        ("ctu=7", r"refuses x265 parameters 'ctu=7'"),
        ("keyint=abc", r"x265 parameter 'keyint' has an invalid value 'abc'"),
        ("aq-mode=3:psy-rd=lots", r"x265 parameter 'psy-rd' has an invalid value 'lots'"),
    ],
)
def test_the_encoder_refuses_invalid_values(params: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as raised:
        check_with_encoder(tools.ffmpeg(), EncodeSettings(x265_params=params))
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("params", ["aq-mode=3:psy-rd=1", "lossless=1", "no-sao=1", "keyint=48",
                                    "log-level=info:bframes=3", ""])  # fmt: skip
def test_the_encoder_accepts_valid_parameters(params: str) -> None:
    check_with_encoder(tools.ffmpeg(), EncodeSettings(preset="ultrafast", x265_params=params))


@pytest.mark.parametrize("params", ["", "log-level=warning", "log=debug:"])
def test_settings_without_parameters_need_no_trial_encode(
    params: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """60 ms of ffmpeg on every file's way to the queue, for nothing the settings' own checks missed."""

    def no_encoder(*args: object, **kwargs: object) -> None:
        raise AssertionError("the encoder ran")

    ffmpeg = tools.ffmpeg()
    monkeypatch.setattr(runner, "run", no_encoder)
    check_with_encoder(ffmpeg, EncodeSettings(preset="veryslow", crf=51, x265_params=params))


def test_the_trial_encode_is_asked_once_per_encoder_and_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = EncodeSettings(crf=23.5, x265_params="aq-mode=2:keyint=50")
    check_with_encoder(tools.ffmpeg(), settings)
    calls: list[object] = []
    monkeypatch.setattr(runner, "run", lambda *args, **kwargs: calls.append(args))
    check_with_encoder(tools.ffmpeg(), settings)
    assert calls == []


def test_a_path_parameter_never_reaches_the_trial_encode(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def no_encoder(*args: object, **kwargs: object) -> None:
        raise AssertionError("the encoder ran")

    monkeypatch.setattr(runner, "run", no_encoder)
    target = tmp_path / "stats.log"
    unchecked = SimpleNamespace(preset="medium", crf=28.0, x265_params=f"stats={target}:pass=1")
    with pytest.raises(SettingsError, match=path_message("stats")):
        check_with_encoder(tools.ffmpeg(), unchecked)  # type: ignore[arg-type]
    assert not target.exists()


def _ffmpeg_that_is(tmp_path: Path, how: str, times: int) -> str:
    """An ffmpeg whose first `times` trial encodes end as `how` says (shell code); after that,
    the real one."""
    script, count = tmp_path / "ffmpeg", tmp_path / "runs"
    script.write_text(
        "#!/bin/sh\n"
        f'echo run >> "{count}"\n'
        f'if [ "$(wc -l < "{count}")" -le {times} ]; then {how}; fi\n'
        f'exec "{tools.ffmpeg()}" "$@"\n'
    )  # fmt: skip
    script.chmod(0o755)
    return str(script)


KILLED = "kill -KILL $$"
STOPPED = "exit 255"  # what ffmpeg does when it catches SIGTERM or SIGINT
CRASHED = "kill -SEGV $$"


def test_a_trial_encode_killed_from_outside_is_asked_again(tmp_path: Path) -> None:
    """A killed trial is no answer about the parameters (a chaos run failed a file as refusing
    'lossless=1' when its trial encode was SIGKILLed)."""
    ffmpeg = _ffmpeg_that_is(tmp_path, KILLED, times=TRIAL_TRIES - 1)
    check_with_encoder(ffmpeg, EncodeSettings(preset="ultrafast", x265_params="lossless=1"))
    assert len((tmp_path / "runs").read_text().split()) == TRIAL_TRIES


def test_a_trial_encode_stopped_every_time_is_no_refusal_and_is_not_remembered(tmp_path: Path) -> None:
    ffmpeg = _ffmpeg_that_is(tmp_path, STOPPED, times=TRIAL_TRIES)
    settings = EncodeSettings(preset="ultrafast", x265_params="no-sao=1")
    with pytest.raises(CommandError, match=rf"stopped from outside {TRIAL_TRIES} times .*status 255"):
        check_with_encoder(ffmpeg, settings)
    check_with_encoder(ffmpeg, settings)  # asked again, and the real encoder answers


def test_a_real_ffmpeg_stopped_by_sigterm_ends_as_the_retry_expects() -> None:
    """The stand-in's `exit 255` is what the bundled ffmpeg does with a SIGTERM."""
    encoder = subprocess.Popen([tools.ffmpeg(), "-nostdin", "-loglevel", "quiet", "-progress", "pipe:1",
                                "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25", "-c:v", "libx265",
                                "-f", "null", "-"], stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert encoder.stdout is not None
        encoder.stdout.readline()  # encoding: its handlers are in place
        encoder.terminate()
        assert encoder.wait(timeout=60) == 255
        assert 255 in STOPPED_FROM_OUTSIDE
    finally:
        encoder.kill()


def test_an_encoder_that_crashes_on_the_parameters_refuses_them(tmp_path: Path) -> None:
    ffmpeg = _ffmpeg_that_is(tmp_path, CRASHED, times=1)
    with pytest.raises(SettingsError, match=r"refuses x265 parameters 'bframes=3' .*signal 11"):
        check_with_encoder(ffmpeg, EncodeSettings(preset="ultrafast", x265_params="bframes=3"))
