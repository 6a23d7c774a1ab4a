"""Coordinator paths as a worker machine sees them (pure)."""

from __future__ import annotations

import pytest

from ute import pathmap
from ute.errors import SettingsError


def test_the_longest_prefix_wins_and_only_whole_folder_names_match() -> None:
    mappings = pathmap.parse(["/srv=/mnt/srv", "/srv/media/=/mnt/media", "/=/root-view"])
    assert pathmap.on_worker("/srv/media/a b.mkv", mappings) == "/mnt/media/a b.mkv"
    assert pathmap.on_worker("/srv/media", mappings) == "/mnt/media"
    assert pathmap.on_worker("/srv/media2/x.mkv", mappings) == "/mnt/srv/media2/x.mkv"
    assert pathmap.on_worker("/other/x.mkv", mappings) == "/root-view/other/x.mkv"


def test_unmapped_paths_stay_and_the_environment_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    mappings = pathmap.parse(["/srv/media=/mnt/media", "/data=/Volumes/data"])
    assert pathmap.on_worker("/elsewhere/x.mkv", mappings) == "/elsewhere/x.mkv"
    monkeypatch.setenv(pathmap.ENV_PATH_MAP, pathmap.to_env(mappings))
    assert pathmap.from_env() == mappings
    monkeypatch.delenv(pathmap.ENV_PATH_MAP)
    assert pathmap.from_env() == []


@pytest.mark.parametrize("entry", ["/srv/media", "srv=/mnt", "/srv=", "=/mnt"])
def test_a_bad_entry_says_how_to_write_it(entry: str) -> None:
    with pytest.raises(SettingsError, match="COORDINATOR_PATH=WORKER_PATH"):
        pathmap.parse([entry])
