from __future__ import annotations

import pytest

from ute.errors import SettingsError
from ute.settings import EncodeSettings


def test_defaults_round_trip_through_json() -> None:
    settings = EncodeSettings(crf=18, preset="slow", x265_params="aq-mode=3", chunk_frames=480)
    assert EncodeSettings.from_json(settings.to_json()) == settings


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crf": 60}, "crf 60 is out of range"),
        ({"preset": "quick"}, "unknown x265 preset 'quick'"),
        ({"x265_params": "aq mode=3"}, "not of the form key=value"),
        ({"chunk_frames": 0}, "must be a positive number"),
    ],
)
def test_bad_values_say_what_is_wrong(kwargs: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        EncodeSettings(**kwargs)
