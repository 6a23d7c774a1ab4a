"""Names as users have them: up to the filesystem's limit, with newlines and escape sequences."""

from __future__ import annotations

import logging
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from ute import config
from ute.logs import OneLineFormatter
from ute.pipeline import NAME_MAX_BYTES, fitted, partial_name, remove_stale_partials


@given(st.text(min_size=1, max_size=300), st.sampled_from([".mkv", ".0123456789abcdef.part", ".error.txt"]))
def test_a_fitted_name_keeps_its_suffix_and_fits(name: str, suffix: str) -> None:
    result = fitted(name, suffix)
    assert result.endswith(suffix) and len(result.encode()) <= NAME_MAX_BYTES
    assert name.startswith(result.removesuffix(suffix))
    if len((name + suffix).encode()) <= NAME_MAX_BYTES:
        assert result == name + suffix


def test_the_hidden_output_of_a_long_name_fits_and_is_found_as_stale(tmp_path: Path) -> None:
    name = "é" * 120 + "ab.mkv"  # 246 bytes: the hidden name would be 270
    partial = tmp_path / partial_name(name, "0123456789abcdef")
    partial.write_bytes(b"half a mux")
    assert len(partial.name.encode()) <= NAME_MAX_BYTES
    assert remove_stale_partials(tmp_path) == [partial] and not partial.exists()


def test_a_name_with_no_room_for_a_sidecar_has_none(tmp_path: Path) -> None:
    source = tmp_path / ("é" * 120 + "abcdef.mkv")  # 250 bytes: `.ute.toml` would not fit
    source.write_bytes(b"")
    assert config.file_layers(source) == []


def test_a_name_with_a_newline_stays_on_one_log_line() -> None:
    record = logging.LogRecord("ute", logging.INFO, __file__, 1, "%s: taken", ("a\nb\x1b[31m.mkv",), None)
    line = OneLineFormatter("%(levelname)s %(message)s").format(record)
    assert line == "INFO a\\nb\\x1b[31m.mkv: taken"
    assert record.getMessage() == "a\nb\x1b[31m.mkv: taken"  # other handlers see the record as it was
