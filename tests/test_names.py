"""Names as users have them: up to the filesystem's limit, with newlines and escape sequences."""

from __future__ import annotations

import logging
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from ute import config
from ute.inbox import ERROR_SUFFIX, InboxLayout, unused_name
from ute.logsetup import OneLineFormatter
from ute.names import NAME_MAX_BYTES, fitted
from ute.pipeline import partial_name, remove_stale_partials


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


LONG = "é" * 120 + "abcdef.mkv"  # 250 bytes: `<name>.error.txt` and `<name>.ute.toml` do not fit


def test_a_long_named_file_goes_to_failed_with_its_reason_and_can_be_retried(tmp_path: Path) -> None:
    layout = InboxLayout(tmp_path / "inbox")
    layout.create()
    source = layout.root / LONG
    source.write_text("not a video")
    moved = layout.move_to_failed(source, f"{source}: not a media file", file_id="0123456789abcdef")
    reasons = list(layout.failed.glob(f"*{ERROR_SUFFIX}"))
    assert moved == layout.failed / LONG and len(reasons) == 1
    assert len(reasons[0].name.encode()) <= NAME_MAX_BYTES and "not a media file" in reasons[0].read_text()
    assert layout.failed_copy(LONG, "0123456789abcdef") == moved


def test_output_names_for_long_names_fit_even_with_a_number(tmp_path: Path) -> None:
    first = unused_name(tmp_path / ("é" * 126 + ".ts").replace(".ts", ".mkv"))
    first.write_bytes(b"")
    second = unused_name(first)
    assert len(first.name.encode()) <= NAME_MAX_BYTES and len(second.name.encode()) <= NAME_MAX_BYTES
    assert second.name.endswith(" (2).mkv") and second != first
