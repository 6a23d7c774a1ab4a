from __future__ import annotations

from pathlib import Path

import pytest

from ute import config
from ute.config import Layer
from ute.errors import SettingsError
from ute.settings import EncodeSettings


def test_later_layers_win_key_by_key(tmp_path: Path) -> None:
    (tmp_path / ".ute.toml").write_text('crf = 24\npreset = "slow"\n')
    (tmp_path / "movie.mkv.ute.toml").write_text('crf = 18\ncrop = "1264:720:8:0"\n')
    source = tmp_path / "movie.mkv"
    settings = config.apply(EncodeSettings(), [Layer("cli", {"x265_params": "aq-mode=3", "crf": 30}),
                                               *config.file_layers(source),
                                               Layer("plugin", {"chunk_frames": 480})])  # fmt: skip
    assert settings == EncodeSettings(crf=18, preset="slow", x265_params="aq-mode=3",
                                      chunk_frames=480, crop="1264:720:8:0")  # fmt: skip


def test_a_file_without_toml_files_keeps_the_settings(tmp_path: Path) -> None:
    assert config.file_layers(tmp_path / "plain.mkv") == []


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("crf = 18\nspeed = 3\n", "unknown setting 'speed'"),
        ('crf = "high"\n', "crf = 'high' has the wrong type"),
        ("crf = 90\n", "crf 90 is out of range"),
        ('crop = "100:101:0:0"\n', "must be even"),
        ('crop = "wide"\n', "not of the form width:height:x:y"),
        ("chunk_frames = true\n", "wrong type"),
        ("crf = \n", "not valid TOML"),
    ],
)
def test_bad_files_name_the_file_and_the_key(tmp_path: Path, toml: str, message: str) -> None:
    sidecar = tmp_path / "movie.mkv.ute.toml"
    sidecar.write_text(toml)
    with pytest.raises(SettingsError, match=message) as raised:
        config.apply(EncodeSettings(), config.file_layers(tmp_path / "movie.mkv"))
    assert str(sidecar) in str(raised.value)


def test_an_explicit_config_must_exist(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read it"):
        config.config_layer(tmp_path / "missing.toml")
