"""What a worker accepts before it runs a chunk, and how a chunk's failure is told without a path.

A chunk job reads two things from Redis, which whoever reaches it can write: its argument (a
ChunkSpec as JSON) and its file's description (a FileSpec as JSON). A worker checks both against
what UTE itself writes before it runs or writes anything, so that a crafted job cannot make it
write outside a `.ute-work/WORK_ID` folder or under an odd name. Pure: no I/O.

rq keeps a failed job's traceback and rq-dashboard shows it unescaped, so a failure is told with
every form of the file's paths and name replaced (Hidden), and with nothing chained to it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import NoneType
from typing import Any

from ute.defaults import WORK_DIR_NAME
from ute.errors import EncodeError, SettingsError
from ute.settings import EncodeSettings

WORK_ID = re.compile(r"[0-9a-f]{16}-[0-9a-f]{8}")  # state.work_id's form: <file id>-<settings digest>
MAX_CHUNK_INDEX = 999_999
MAX_FRAMES = 1_000_000_000
MAX_SEEK_MICROSECONDS = 30 * 24 * 3600 * 1_000_000
MAX_VIDEO_INDEX = 65_535
MAX_PATH_CHARS = 4096
INT64 = (-(2**63), 2**63 - 1)  # ffmpeg's timestamps

FROM_REDIS = "UTE never writes that: check who else can write to its Redis"
FROM_PATH_MAP = "check this worker's --path-map or UTE_PATH_MAP"
VERSIONS = ("only another UTE version writes that: run one version everywhere, and check who else can "
            "write to its Redis")

Types = tuple[type, ...]
CHUNK_FIELDS: dict[str, Types] = {
    "work_id": (str,), "index": (int,), "start": (int,), "frames": (int,), "start_pts": (int,),
    "seek_microseconds": (int, NoneType),
}  # fmt: skip
CHUNK_RANGES = {
    "index": (0, MAX_CHUNK_INDEX), "start": (0, MAX_FRAMES), "frames": (1, MAX_FRAMES),
    "start_pts": INT64, "seek_microseconds": (0, MAX_SEEK_MICROSECONDS),
}  # fmt: skip
FILE_FIELDS: dict[str, Types] = {
    "source": (str,), "video_index": (int,), "work_dir": (str,), "settings": (dict,),
}  # fmt: skip
SETTINGS_FIELDS: dict[str, Types] = {
    "crf": (int, float), "preset": (str,), "x265_params": (str,), "chunk_frames": (int, NoneType),
    "crop": (str, NoneType),
}  # fmt: skip
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")
_UNSAFE = re.compile(r"[^\w .,:;=+\-/()'%#!?]", re.ASCII)


def chunk_name(chunk: object) -> str:
    """How messages name a chunk: by index and the file's id (as `ute status` shows it), each
    shown only if it is sane."""
    fields = chunk if isinstance(chunk, dict) else {}
    index, work_id = fields.get("index"), fields.get("work_id")
    shown_index = str(index) if _is_int(index) and abs(index) < 10**9 else "?"
    shown_id = work_id.partition("-")[0] if isinstance(work_id, str) and WORK_ID.fullmatch(work_id) else "?"
    return f"chunk {shown_index} of file {shown_id}"


def check_chunk(chunk: object) -> None:
    """EncodeError unless chunk is a ChunkSpec's JSON as UTE writes it."""
    problem = _fields_problem(chunk, "the job's argument", "the job's", CHUNK_FIELDS, CHUNK_RANGES)
    if problem is None and isinstance(chunk, dict) and not WORK_ID.fullmatch(chunk["work_id"]):
        problem = "the job's work_id is not 16 hex digits, '-' and 8 hex digits"
    if problem:
        raise _refused(chunk_name(chunk), problem, FROM_REDIS)


def check_file(file: object, work_id: str, name: str) -> None:
    """EncodeError unless file is a FileSpec's JSON as UTE writes it for the chunk's work_id."""
    problem = _fields_problem(file, "the file's description", "the file's", FILE_FIELDS,
                              {"video_index": (0, MAX_VIDEO_INDEX)})  # fmt: skip
    if problem is None and isinstance(file, dict):
        problem = _paths_problem(file["source"], file["work_dir"], work_id, "the file's", exact=True)
    if problem:
        raise _refused(name, problem, FROM_REDIS)
    assert isinstance(file, dict)
    problem = _settings_problem(file["settings"])
    if problem:
        raise _refused(name, problem, VERSIONS)


def check_on_worker(source: str, work_dir: str, work_id: str, name: str) -> None:
    """EncodeError unless the paths, as this worker's path map made them, are still sane. A map may
    move the work folder (`/srv/out/.ute-work=/mnt/work`), but not the file's own folder in it."""
    problem = _paths_problem(source, work_dir, work_id, "after this worker's path map, the file's",
                             exact=False)  # fmt: skip
    if problem:
        raise _refused(name, problem, FROM_PATH_MAP)


def _refused(name: str, problem: str, hint: str) -> EncodeError:
    return EncodeError(f"{name}: refused: {problem}; {hint}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fields_problem(data: object, whole: str, part: str, fields: Mapping[str, Types],
                    ranges: Mapping[str, tuple[int, int]]) -> str | None:  # fmt: skip
    """What is wrong with data's keys or their types and ranges: `whole` names data, `part` its keys."""
    if not isinstance(data, dict):
        return f"{whole} is {_kind(data)}, not a JSON object"
    missing = [key for key in fields if key not in data]
    unknown = [key for key in data if key not in fields]
    if missing:
        return f"{whole} lacks {', '.join(missing)}"
    if unknown:
        return f"{whole} has unknown keys: {_keys(unknown)}"
    for key, types in fields.items():
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, types):  # bool: an int to Python only
            return f"{part} {key} is {_kind(value)}, not {' or '.join(map(_kind_name, types))}"
        if key in ranges and value is not None and not ranges[key][0] <= value <= ranges[key][1]:
            shown = value if abs(value) < 10**20 else "a huge number"
            return f"{part} {key} must be from {ranges[key][0]} to {ranges[key][1]}, not {shown}"
    return None


def _paths_problem(source: str, work_dir: str, work_id: str, whose: str, *, exact: bool) -> str | None:
    for key, path in (("source", source), ("work_dir", work_dir)):
        problem = _path_problem(path)
        if problem:
            return f"{whose} {key} {problem}"
    *_, parent, folder = work_dir.split("/")
    if exact and (folder != work_id or parent != WORK_DIR_NAME):
        return f"{whose} work_dir is not a {WORK_DIR_NAME}/{work_id} folder"
    if folder != work_id:
        return f"{whose} work_dir does not end in {work_id}"
    return None


def _path_problem(path: str) -> str | None:
    if not path.startswith("/"):
        return "is not an absolute path"
    if len(path) > MAX_PATH_CHARS:
        return f"is longer than {MAX_PATH_CHARS} characters"
    if "\0" in path:  # no file name has one; a line break is fine (users have such names)
        return "holds a NUL character"
    if ".." in path.split("/"):
        return "has a '..' component"
    try:
        os.fsencode(path)
    except UnicodeEncodeError:
        return "cannot be a file name (it holds lone surrogates)"
    return None


def _settings_problem(settings: dict[str, Any]) -> str | None:
    whole, part = "the file's settings object", "the file's setting"
    problem = _fields_problem(settings, whole, part, SETTINGS_FIELDS, {})
    if problem:
        return problem
    try:
        EncodeSettings.from_json(settings)
    except SettingsError as error:
        return f"the file's settings are refused: {_plain(str(error))}"
    return None


def _kind(value: object) -> str:
    return "null" if value is None else _kind_name(type(value))


def _kind_name(kind: type) -> str:
    names = {NoneType: "null", bool: "true/false", int: "a whole number", float: "a number",
             str: "a string", dict: "a JSON object", list: "a list"}  # fmt: skip
    return names.get(kind, "something else")


def _keys(keys: list[str]) -> str:
    """Key names as they may be shown: plain identifiers, the others only counted."""
    plain = [key for key in keys if _KEY.fullmatch(key)][:5]
    others = len(keys) - len(plain)
    return ", ".join([*plain, *([f"{others} not shown"] if others else [])])


def _plain(text: str, limit: int = 200) -> str:
    """text with nothing a browser could read as markup, and not too long."""
    return _UNSAFE.sub("?", text)[:limit]


# A name shorter than this is hidden only as part of its full path (`a` is in every message).
MIN_HIDDEN_NAME = 3


@dataclass(frozen=True)
class Hidden:
    """The forms in which a file's paths and name can show up in a message, and their stand-ins:
    as given, as Python's repr and JSON write them, as decoded with bad UTF-8 replaced (how
    runner reads ffmpeg's stderr), and each line of them. `file:` URLs hold the path as given."""

    stand_ins: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, sources: Iterable[str], work_dirs: Iterable[str]) -> Hidden:
        stand_ins: dict[str, str] = {}
        for source in sources:
            name = source.rstrip("/").rpartition("/")[2]
            if len(name) >= MIN_HIDDEN_NAME:
                stand_ins.update(dict.fromkeys(_forms(name), "SOURCE_NAME"))
            stand_ins.update(dict.fromkeys(_forms(source), "SOURCE"))
        for work_dir in work_dirs:
            stand_ins.update(dict.fromkeys(_forms(work_dir), "WORKDIR"))
        stand_ins.pop("", None)
        return cls(stand_ins)

    def scrub(self, text: str) -> str:
        if not self.stand_ins:
            return text
        # One pass, longest first: a path is replaced whole, and no stand-in is replaced again.
        pattern = "|".join(re.escape(form) for form in sorted(self.stand_ins, key=len, reverse=True))
        return re.sub(pattern, lambda match: self.stand_ins[match.group()], text)


def _forms(text: str) -> set[str]:
    forms = {text, repr(text)[1:-1], json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]}
    with contextlib.suppress(UnicodeEncodeError):  # a lone surrogate that no file name has
        forms.add(text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
    # A name with a line break reaches a message in pieces: ffmpeg's stderr is read line by line.
    pieces = {piece for form in forms for piece in re.split(r"[\r\n]", form) if len(piece) >= MIN_HIDDEN_NAME}
    return forms | pieces
