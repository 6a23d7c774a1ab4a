"""A worker checks what Redis tells it before anything runs, and no file name reaches rq's records.

Whoever can write to Redis can write a chunk job's argument and its file's description. Real
workers against a real Redis get crafted ones and must refuse them without writing anything; a
chunk of a file with a hostile name that fails must leave no part of that name in anything rq
keeps (rq-dashboard shows job errors unescaped). Then the checks themselves, pure and fast.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import traceback
import zlib
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import start_worker
from hypothesis import given
from hypothesis import strategies as st
from media import make_clip
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from ute import jobs, jobspec, pipeline, state, submit
from ute.defaults import WORK_DIR_NAME
from ute.errors import EncodeError
from ute.probe import probe
from ute.settings import EncodeSettings

HOSTILE = "<img src=x onerror=alert(2)> b.mkv"
HOSTILE_LINES = "<img src=x onerror=alert(3)>\n<img src=y onerror=alert(4)> c.mkv"
HOSTILE_PARTS = ("onerror", "<img", "alert(", "src=x", "src=y")
FROM_REDIS, VERSIONS = jobspec.FROM_REDIS, jobspec.VERSIONS
DOTDOT = "the file's work_dir has a '..' component"


def prepared_file(folder: Path, name: str = "clip.mkv") -> pipeline.PreparedFile:
    """A real 2-chunk file as the coordinator plans it, its work folder in outbox/.ute-work."""
    (folder / "inbox").mkdir(parents=True)
    source = make_clip(folder / "inbox" / name, seconds=2, gop=24)
    settings = EncodeSettings(preset="ultrafast", chunk_frames=24)
    prepared = pipeline.prepare(probe(source), settings, folder / "outbox" / WORK_DIR_NAME)
    prepared.work_dir.mkdir(parents=True)
    return prepared


def enqueue(connection: redis.Redis, job_id: str, chunk: Any, file: dict[str, Any] | None = None,
            work_id: str = "") -> None:  # fmt: skip
    """What someone with write access to Redis can do: any argument, any file description."""
    if file is not None:
        state.save_file_spec(connection, work_id, file)
    state.queue(state.QUEUE_LOW, connection).enqueue(jobs.encode_chunk, chunk, job_id=job_id,
                                                     description="crafted", failure_ttl=600)  # fmt: skip


def run_worker(redis_url: str, tmp_path: Path, *extra: str) -> None:
    log = tmp_path.parent / f"{tmp_path.name}-worker.log"  # outside the tree the tests watch
    worker = start_worker(redis_url, log, "--burst", *extra)
    assert worker.wait(timeout=120) == 0, log.read_text()


def failures(connection: redis.Redis, job_ids: list[str]) -> dict[str, str]:
    """Each job's status, and for a failed one the last line of the error rq keeps."""
    found = {}
    for job_id in job_ids:
        job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
        status = JobStatus(job.get_status())
        found[job_id] = submit.failure_message(job) if status == JobStatus.FAILED else status.value
    return found


def tree(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def assert_nothing_ran(connection: redis.Redis, root: Path, before: set[str]) -> None:
    assert tree(root) == before, "a refused job wrote something"
    assert not list(connection.scan_iter(f"{state.KEY_PREFIX}attempt:*")), "a refused job claimed a chunk"
    assert not list(connection.scan_iter(f"{state.KEY_PREFIX}alive:*"))


def refused(chunk: str, problem: str, hint: str = FROM_REDIS) -> str:
    return f"{chunk}: refused: {problem}; {hint}"


# --- real workers, real Redis -----------------------------------------------------------------


def test_a_work_dir_that_climbs_out_with_dotdot_is_refused_and_nothing_is_written(
    clean_redis: str, tmp_path: Path
) -> None:
    prepared = prepared_file(tmp_path)
    connection = state.connect(clean_redis)
    chunk = prepared.specs[0].to_json()
    climbing = {**prepared.file_spec.to_json(), "work_dir": f"{prepared.work_dir.parent}/../../escape"}
    # Ends in .ute-work/ID, so only the '..' rule stops it: without it the segment lands in escape/.
    sneaky_id = "00000000000000aa-000000bb"
    (tmp_path / "escape" / ".ute-work" / sneaky_id).mkdir(parents=True)
    sneaky = {**prepared.file_spec.to_json(),
              "work_dir": f"{prepared.work_dir}/../../../escape/.ute-work/{sneaky_id}"}  # fmt: skip
    enqueue(connection, "climbing", chunk, climbing, prepared.work_id)
    enqueue(connection, "sneaky", {**chunk, "work_id": sneaky_id}, sneaky, sneaky_id)
    before = tree(tmp_path)

    run_worker(clean_redis, tmp_path)

    assert failures(connection, ["climbing", "sneaky"]) == {
        "climbing": refused(f"chunk 0 of file {prepared.file_id}", DOTDOT),
        "sneaky": refused("chunk 0 of file 00000000000000aa", DOTDOT),
    }
    assert_nothing_ran(connection, tmp_path, before)


def test_a_negative_chunk_index_is_refused(clean_redis: str, tmp_path: Path) -> None:
    prepared = prepared_file(tmp_path)
    connection = state.connect(clean_redis)
    state.save_file_spec(connection, prepared.work_id, prepared.file_spec.to_json())
    enqueue(connection, "negative", {**prepared.specs[1].to_json(), "index": -1})
    before = tree(tmp_path)

    run_worker(clean_redis, tmp_path)

    assert failures(connection, ["negative"]) == {
        "negative": refused(f"chunk -1 of file {prepared.file_id}",
                            "the job's index must be from 0 to 999999, not -1"),
    }  # fmt: skip
    assert_nothing_ran(connection, tmp_path, before)
    assert not (prepared.work_dir / "-0001.mkv").exists()


def test_a_work_dir_that_is_not_the_files_own_ute_work_folder_is_refused(
    clean_redis: str, tmp_path: Path
) -> None:
    prepared = prepared_file(tmp_path)
    connection = state.connect(clean_redis)
    ids = {job_id: f"{number:016x}-{number:08x}" for number, job_id in
           enumerate(["outbox", "other-file", "not-ute-work", "trailing-slash"], start=1)}  # fmt: skip
    elsewhere = {  # each an existing folder: without the check, the segment would be written there
        "outbox": tmp_path / "outbox",
        "other-file": prepared.work_dir,
        "not-ute-work": tmp_path / "elsewhere" / ids["not-ute-work"],
        "trailing-slash": prepared.work_dir.parent / ids["trailing-slash"],
    }
    for job_id, work_dir in elsewhere.items():
        work_dir.mkdir(parents=True, exist_ok=True)
        shown = f"{work_dir}/" if job_id == "trailing-slash" else str(work_dir)
        enqueue(connection, job_id, {**prepared.specs[0].to_json(), "work_id": ids[job_id]},
                {**prepared.file_spec.to_json(), "work_dir": shown}, ids[job_id])  # fmt: skip
    before = tree(tmp_path)

    run_worker(clean_redis, tmp_path)

    expected = {job_id: refused(f"chunk 0 of file {state.file_id_of(work_id)}",
                                f"the file's work_dir is not a .ute-work/{work_id} folder")
                for job_id, work_id in ids.items()}  # fmt: skip
    assert failures(connection, list(elsewhere)) == expected
    assert_nothing_ran(connection, tmp_path, before)


def test_unknown_keys_and_wrong_types_are_refused(clean_redis: str, tmp_path: Path) -> None:
    prepared = prepared_file(tmp_path)
    connection = state.connect(clean_redis)
    chunk = prepared.specs[1].to_json()
    good_file = prepared.file_spec.to_json()
    settings = good_file["settings"]
    name = f"chunk 1 of file {prepared.file_id}"
    chunks: dict[str, tuple[Any, str]] = {
        "extra-key": ({**chunk, "shell": "rm -rf /"}, "the job's argument has unknown keys: shell"),
        "hostile-key": ({**chunk, HOSTILE: 1}, "the job's argument has unknown keys: 1 not shown"),
        "no-seek": ({k: v for k, v in chunk.items() if k != "seek_microseconds"},
                    "the job's argument lacks seek_microseconds"),
        "bool-index": ({**chunk, "index": True}, "the job's index is true/false, not a whole number"),
        "text-frames": ({**chunk, "frames": "24"}, "the job's frames is a string, not a whole number"),
        "float-start": ({**chunk, "start": 24.0}, "the job's start is a number, not a whole number"),
        "negative-seek": ({**chunk, "seek_microseconds": -1},
                          "the job's seek_microseconds must be from 0 to 2592000000000, not -1"),
        "no-frames": ({**chunk, "frames": 0}, "the job's frames must be from 1 to 1000000000, not 0"),
    }  # fmt: skip
    for job_id, (crafted, _) in chunks.items():
        enqueue(connection, job_id, crafted, good_file, prepared.work_id)
    bad_id = {**chunk, "work_id": "../../" + HOSTILE}
    enqueue(connection, "bad-file-id", bad_id)
    enqueue(connection, "a-list", [chunk])
    files: dict[str, tuple[dict[str, Any], str, str]] = {
        "file-extra-key": ({**good_file, "command": "x"}, "the file's description has unknown keys: command",
                           FROM_REDIS),
        "text-video-index": ({**good_file, "video_index": "0"},
                             "the file's video_index is a string, not a whole number", FROM_REDIS),
        "relative-source": ({**good_file, "source": "inbox/clip.mkv"},
                            "the file's source is not an absolute path", FROM_REDIS),
        "nul-source": ({**good_file, "source": good_file["source"] + "\0x"},
                       "the file's source holds a NUL character", FROM_REDIS),
        "settings-extra-key": ({**good_file, "settings": {**settings, "analysis_save": "/tmp/x"}},
                               "the file's settings object has unknown keys: analysis_save", VERSIONS),
        "settings-text-crf": ({**good_file, "settings": {**settings, "crf": "18"}},
                              "the file's setting crf is a string, not a whole number or a number", VERSIONS),
        "settings-csv": ({**good_file, "settings": {**settings, "x265_params": "csv=/tmp/x.csv"}},
                         "the file's settings are refused: x265 parameter 'csv' reads or writes a file, "
                         "which UTE does not allow (it would let a setting touch files outside UTE's "
                         "folders)",
                         VERSIONS),
        "settings-hostile-preset": ({**good_file, "settings": {**settings, "preset": HOSTILE}},
                                    "the file's settings are refused: unknown x265 preset '?img src=x "
                                    "onerror=alert(2)? b.mkv': use one of ultrafast, superfast, veryfast, "
                                    "faster, fast, medium, slow, slower, veryslow, placebo", VERSIONS),
    }  # fmt: skip
    for number, (job_id, (crafted, _, _)) in enumerate(files.items()):
        work_id = f"{number + 1:016x}-00000000"
        own_folder = {"work_dir": str(prepared.work_dir.parent / work_id)}
        enqueue(connection, job_id, {**chunk, "work_id": work_id}, {**crafted, **own_folder}, work_id)
    before = tree(tmp_path)

    run_worker(clean_redis, tmp_path)

    expected = {job_id: refused(name, problem) for job_id, (_, problem) in chunks.items()}
    expected["bool-index"] = refused(f"chunk ? of file {prepared.file_id}", chunks["bool-index"][1])
    expected["bad-file-id"] = refused("chunk 1 of file ?",
                                      "the job's work_id is not 16 hex digits, '-' and 8 hex digits")
    expected["a-list"] = refused("chunk ? of file ?", "the job's argument is a list, not a JSON object")
    for number, (job_id, (_, problem, hint)) in enumerate(files.items()):
        expected[job_id] = refused(f"chunk 1 of file {number + 1:016x}", problem, hint)
    assert failures(connection, list(expected)) == expected
    assert_nothing_ran(connection, tmp_path, before)


def redis_dump(connection: redis.Redis) -> dict[str, str]:
    """Every key with everything in it as text, rq's compressed fields unpacked: a job's exc_info
    (zlib), a result's exc_string (base64 of zlib) and return_value (base64 of JSON)."""
    dump = {}
    for raw_key in connection.scan_iter(count=1000):
        key = raw_key.decode()
        kind = connection.type(raw_key).decode()
        if kind == "string":
            values = [connection.get(raw_key)]
        elif kind == "hash":
            values = [part for item in connection.hgetall(raw_key).items() for part in item]
        elif kind == "list":
            values = connection.lrange(raw_key, 0, -1)
        elif kind == "set":
            values = list(connection.smembers(raw_key))
        elif kind == "zset":
            values = connection.zrange(raw_key, 0, -1)
        elif kind == "stream":
            values = [part for _, entry in connection.xrange(raw_key)
                      for item in entry.items() for part in item]  # fmt: skip
        else:
            pytest.fail(f"{key}: a {kind} key, which this dump cannot read")
        dump[key] = "\n".join([key, *(text for value in values for text in _unpacked(value))])
    return dump


def _unpacked(value: bytes | None) -> list[str]:
    if value is None:
        return []
    texts = [value.decode("utf-8", "replace")]
    candidates = [value]
    with contextlib.suppress(binascii.Error, ValueError):
        candidates.append(base64.b64decode(value, validate=True))
    for candidate in candidates:
        try:
            texts.append(zlib.decompress(candidate).decode("utf-8", "replace"))
        except zlib.error:
            texts.append(candidate.decode("utf-8", "replace"))
    return texts


def test_a_hostile_file_name_reaches_nothing_rq_keeps(clean_redis: str, tmp_path: Path) -> None:
    """One file with the name encodes, two fail (deleted after they were submitted; one has a line
    break in its name, so ffmpeg reports it in pieces); the worker sees them through a path map,
    so their paths are in two forms."""
    connection = state.connect(clean_redis)
    coordinator_root = "/coordinator/media"
    submitted = []
    for folder, name in (("encodes", HOSTILE), ("fails", HOSTILE), ("fails-too", HOSTILE_LINES)):
        prepared = prepared_file(tmp_path / folder, name)
        spec = prepared.file_spec.to_json()
        on_coordinator = {**spec, "source": spec["source"].replace(str(tmp_path), coordinator_root),
                          "work_dir": spec["work_dir"].replace(str(tmp_path), coordinator_root)}  # fmt: skip
        submit.submit_chunks(connection, jobs.FileSpec(**on_coordinator), prepared.specs)
        submitted.append(prepared)
    encodes, *failing = submitted
    for prepared in failing:
        Path(prepared.info.path).unlink()

    run_worker(clean_redis, tmp_path, "--path-map", f"{coordinator_root}={tmp_path}")

    done = failures(connection, state.current_chunk_job_ids(connection, encodes.work_id, [0, 1]))
    assert set(done.values()) == {"finished"}, done
    for fails in failing:
        failed = failures(connection, state.current_chunk_job_ids(connection, fails.work_id, [0, 1]))
        for index, message in enumerate(failed.values()):
            assert message.startswith(f"chunk {index} of file {fails.file_id}: ffmpeg exited "), message
            assert "Error opening input file file:SOURCE" in message, message
    dump = redis_dump(connection)
    marks = (*HOSTILE_PARTS, coordinator_root, str(tmp_path))
    with_name = {key for key, text in dump.items() if any(mark in text for mark in marks)}
    # Only UTE's own descriptions hold it (workers need the path; rq-dashboard never shows them).
    descriptions = {f"{state.KEY_PREFIX}filespec:{prepared.work_id}" for prepared in submitted}
    assert with_name == descriptions, with_name
    everything = "\n".join(dump.values())
    assert "Error opening input file file:SOURCE." in everything, "the dump did not unpack the errors"
    assert "encoded 24 frames" in everything, "the dump did not unpack the results"


# --- the checks themselves, pure ----------------------------------------------------------------


def test_the_checks_know_every_field_ute_writes() -> None:
    assert list(jobspec.CHUNK_FIELDS) == [f.name for f in fields(jobs.ChunkSpec)]
    assert list(jobspec.FILE_FIELDS) == [f.name for f in fields(jobs.FileSpec)]
    assert list(jobspec.SETTINGS_FIELDS) == [f.name for f in fields(EncodeSettings)]


def test_what_the_coordinator_writes_passes_also_from_a_ts_starting_at_10_s_and_typed_dotdot_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks after the first seek from the container's start: never negative, even when the file
    starts late. `Path.absolute()` keeps a typed `../`; the description sent has none."""
    (tmp_path / "in").mkdir()
    make_clip(tmp_path / "in" / "late.ts", seconds=3, gop=12, container_args=("-output_ts_offset", "10"))
    monkeypatch.chdir(tmp_path / "in")
    info = probe(Path("../in/late.ts").absolute())
    assert info.start_time_us >= 10_000_000 and ".." in info.path
    prepared = pipeline.prepare(info, EncodeSettings(preset="ultrafast", chunk_frames=12),
                                Path("../out/.ute-work").absolute())  # fmt: skip
    assert len(prepared.specs) >= 3
    for spec in prepared.specs:
        jobspec.check_chunk(spec.to_json())
        assert spec.seek_microseconds is None or spec.seek_microseconds >= 0
    name = f"chunk 0 of file {prepared.file_id}"
    jobspec.check_file(prepared.file_spec.to_json(), prepared.work_id, name)
    assert prepared.file_spec.to_json()["source"] == str(tmp_path / "in" / "late.ts")
    with pytest.raises(EncodeError, match=r"^chunk 0 of file \w+: refused: the file's source has a '\.\.' "):
        jobspec.check_file(asdict(prepared.file_spec), prepared.work_id, name)


FILE_ID = "0123456789abcdef"
WORK_ID = f"{FILE_ID}-89abcdef"
GOOD_CHUNK = {"work_id": WORK_ID, "index": 3, "start": 72, "frames": 24, "start_pts": 3000,
              "seek_microseconds": 3_000_000}  # fmt: skip
GOOD_FILE = {"source": "/srv/in/a.mkv", "video_index": 0, "work_dir": f"/srv/out/.ute-work/{WORK_ID}",
             "settings": EncodeSettings().to_json()}  # fmt: skip
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def assert_plain_line(error: EncodeError) -> None:
    message = str(error)
    assert "\n" not in message and "\r" not in message
    assert not set(message) & set("<>&\"\0"), message
    assert error.__cause__ is None and error.__context__ is None


@given(st.integers(0, jobspec.MAX_CHUNK_INDEX), st.integers(0, jobspec.MAX_FRAMES),
       st.integers(1, jobspec.MAX_FRAMES), st.integers(-(2**63), 2**63 - 1),
       st.none() | st.integers(0, jobspec.MAX_SEEK_MICROSECONDS),
       st.text("0123456789abcdef", min_size=16, max_size=16), st.text())  # fmt: skip
def test_every_chunk_ute_can_write_passes(index: int, start: int, frames: int, pts: int, seek: int | None,
                                          file_id: str, settings_json: str) -> None:  # fmt: skip
    jobspec.check_chunk({"work_id": state.work_id(file_id, settings_json), "index": index, "start": start,
                         "frames": frames, "start_pts": pts, "seek_microseconds": seek})  # fmt: skip


@given(st.sampled_from(sorted(GOOD_CHUNK)), json_values)
def test_a_chunk_with_any_other_value_passes_only_if_it_is_in_range(key: str, value: Any) -> None:
    types = jobspec.CHUNK_FIELDS[key]
    low, high = jobspec.CHUNK_RANGES.get(key, (0, 0))
    typed = not isinstance(value, bool) and isinstance(value, types)
    fits = typed and (value is None or (is_work_id(value) if key == "work_id" else low <= value <= high))
    try:
        jobspec.check_chunk({**GOOD_CHUNK, key: value})
    except EncodeError as error:
        assert not fits, error
        assert_plain_line(error)
        shown = "3" if key != "index" else str(value) if typed and abs(value) < 10**9 else "?"
        assert str(error).startswith(f"chunk {shown} of file "), error
    else:
        assert fits


def is_work_id(value: str) -> bool:
    file_id, dash, digest = value.partition("-")
    hex_digits = set("0123456789abcdef")
    return (len(file_id), dash, len(digest)) == (16, "-", 8) and set(file_id + digest) <= hex_digits


@given(json_values)
def test_anything_else_as_a_chunk_is_one_plain_line(value: Any) -> None:
    with pytest.raises(EncodeError) as raised:
        jobspec.check_chunk(value)
    assert_plain_line(raised.value)


@given(st.dictionaries(st.text(max_size=12), json_values, max_size=4))
def test_extra_keys_are_refused_and_named_only_if_plain(extra: dict[str, Any]) -> None:
    for spec, check in ((GOOD_CHUNK, jobspec.check_chunk),
                        (GOOD_FILE, lambda data: jobspec.check_file(data, WORK_ID, "chunk 3"))):  # fmt: skip
        unknown = {key: value for key, value in extra.items() if key not in spec}
        if unknown:
            with pytest.raises(EncodeError, match="has unknown keys") as raised:
                check({**spec, **unknown})
            assert_plain_line(raised.value)


path_part = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="/"), max_size=6)
path_parts = st.lists(path_part | st.sampled_from(["..", ".", ".ute-work", WORK_ID, FILE_ID]), min_size=1,
                      max_size=5)  # fmt: skip


@given(path_parts, path_parts)
def test_a_work_dir_passes_only_as_a_ute_work_folder_of_the_file_without_dotdot(
    head: list[str], tail: list[str]
) -> None:
    work_dir = "/" + "/".join([*head, *tail])
    parts = work_dir.split("/")
    fits = parts[-2:] == [".ute-work", WORK_ID] and ".." not in parts and "\0" not in work_dir
    try:
        jobspec.check_file({**GOOD_FILE, "work_dir": work_dir}, WORK_ID, "chunk 3")
    except EncodeError as error:
        assert not fits, error
        assert_plain_line(error)
    else:
        assert fits


def test_after_the_path_map_the_work_folder_may_move_but_stays_the_files_own() -> None:
    jobspec.check_on_worker("/mnt/in/a.mkv", f"/mnt/ute-work/{WORK_ID}", WORK_ID, "chunk 3")
    for source, work_dir, problem in [
        ("/mnt/in/a.mkv", f"mnt/.ute-work/{WORK_ID}", "the file's work_dir is not an absolute path"),
        ("/mnt/../a.mkv", f"/mnt/.ute-work/{WORK_ID}", "the file's source has a '..' component"),
        ("/mnt/in/a.mkv", "/mnt/ute-work", f"the file's work_dir does not end in {WORK_ID}"),
        ("/mnt/in/a.mkv", f"/mnt/ute-work/{FILE_ID}", f"the file's work_dir does not end in {WORK_ID}"),
    ]:
        with pytest.raises(EncodeError) as raised:
            jobspec.check_on_worker(source, work_dir, WORK_ID, "chunk 3 of file x")
        assert str(raised.value) == (f"chunk 3 of file x: refused: after this worker's path map, {problem}; "
                                     "check this worker's --path-map or UTE_PATH_MAP")  # fmt: skip


forms_of_a_path = st.sampled_from([
    "Error opening input file file:{path}.", "[Errno 2] No such file or directory: {repr}",
    "{{\"source\": {json}}}", "{replaced}: Invalid data", "{name} and {path} and {repr} again",
    "{ascii_json}", "Error opening input file file:{first_line} | {last_line}.",
])  # fmt: skip
name_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="/\0"), max_size=10)


@given(name_text, name_text, st.booleans(), forms_of_a_path)
def test_a_hostile_name_is_gone_from_a_message_in_every_form(before: str, after: str, bad_byte: bool,
                                                             template: str) -> None:  # fmt: skip
    """Also with line breaks, and with a byte that is not UTF-8 (Python holds it as a lone surrogate;
    ffmpeg's stderr, as runner reads it, as U+FFFD)."""
    name = f"{before}<img{after}" + ("\udcff" if bad_byte else "")
    path = f"/srv/in/{name}"
    replaced = path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    lines = re.split(r"[\r\n]", path)  # ffmpeg's stderr, as runner reads it, line by line
    text = template.format(path=path, repr=repr(path), json=json.dumps(path, ensure_ascii=False),
                           ascii_json=json.dumps(path), name=name, replaced=replaced,
                           first_line=lines[0], last_line=lines[-1])  # fmt: skip
    scrubbed = jobspec.Hidden.of([path], [f"/srv/out/.ute-work/{WORK_ID}"]).scrub(text)
    assert "<img" not in scrubbed, (text, scrubbed)


def test_an_encoder_failure_chains_nothing_and_names_no_path(tmp_path: Path) -> None:
    """What rq would keep: the traceback of the error, with its causes and contexts."""
    source = make_clip(tmp_path / HOSTILE, seconds=1, gop=24)
    work_dir = tmp_path / "outbox" / ".ute-work" / WORK_ID
    work_dir.mkdir(parents=True)
    file = jobs.FileSpec(str(source), 0, str(work_dir), EncodeSettings(preset="ultrafast").to_json())
    source.unlink()
    with pytest.raises(EncodeError) as raised:
        jobs.encode(file, jobs.ChunkSpec(WORK_ID, 0, 0, 24, 0))
    kept = "".join(traceback.format_exception(raised.value))
    assert raised.value.__cause__ is None and raised.value.__context__ is None
    assert not any(part in kept for part in HOSTILE_PARTS) and str(tmp_path) not in kept, kept
    assert str(raised.value).startswith(f"chunk 0 of file {FILE_ID}: ffmpeg exited with status "), kept
    assert "Error opening input file file:SOURCE." in str(raised.value), kept
    assert os.listdir(work_dir) == []


def test_the_chunk_name_shows_only_sane_parts() -> None:
    assert jobspec.chunk_name(GOOD_CHUNK) == f"chunk 3 of file {FILE_ID}"
    assert jobspec.chunk_name({"index": 10**30, "work_id": "<b>"}) == "chunk ? of file ?"
    assert jobspec.chunk_name("anything") == "chunk ? of file ?"
    assert jobspec.chunk_name({"index": -5, "work_id": WORK_ID}) == f"chunk -5 of file {FILE_ID}"
    assert jobspec.chunk_name({"index": 3, "work_id": FILE_ID}) == "chunk 3 of file ?"


@given(st.text(), st.integers(0, 2**40), st.integers(0, 2**62), st.text())
def test_a_work_id_is_the_files_id_and_8_hex_of_its_settings(path: str, size: int, mtime_ns: int,
                                                            settings_json: str) -> None:  # fmt: skip
    file_id = state.fingerprint(path, size, mtime_ns)
    work_id = state.work_id(file_id, settings_json)
    assert re.fullmatch("[0-9a-f]{16}", file_id) and jobspec.WORK_ID.fullmatch(work_id)
    assert state.file_id_of(work_id) == file_id and work_id.startswith(f"{file_id}-")
    assert jobspec.chunk_name({**GOOD_CHUNK, "work_id": work_id}) == f"chunk 3 of file {file_id}"
    assert state.work_id(file_id, settings_json + " ") != work_id, "other settings, other chunks"


@pytest.mark.parametrize("work_id", [
    FILE_ID, f"{FILE_ID}-", f"{FILE_ID}-89abcde", f"{FILE_ID}-89abcdef0", f"{FILE_ID}_89abcdef",
    f"{FILE_ID}-89ABCDEF", f"{FILE_ID.upper()}-89abcdef", f"{FILE_ID[:15]}-89abcdef", f"{FILE_ID}-89abcdeg",
    f"{WORK_ID}\n", f"../{WORK_ID}", f"{WORK_ID}/..", "",
])  # fmt: skip
def test_a_work_id_other_than_16_hex_dash_8_hex_is_refused(work_id: str) -> None:
    with pytest.raises(EncodeError, match=r"^chunk 3 of file \?: refused: the job's work_id is not 16 hex "):
        jobspec.check_chunk({**GOOD_CHUNK, "work_id": work_id})
    with pytest.raises(EncodeError, match="refused: the file's work_dir"):
        jobspec.check_file({**GOOD_FILE, "work_dir": f"/srv/out/.ute-work/{WORK_ID}"}, work_id, "chunk 3")


def test_a_short_file_cut_shorter_gets_a_work_id_of_its_own(tmp_path: Path) -> None:
    """Its segments must never be taken for those of the 10 s chunks it was cut into before,
    under the same settings; a long file's work id is what it always was (a run resumes)."""
    settings = EncodeSettings(preset="ultrafast")
    short = probe(make_clip(tmp_path / "short.mkv", seconds=10, size="64x36"))
    long = probe(make_clip(tmp_path / "long.mkv", seconds=48, size="64x36"))
    by_settings_alone = json.dumps(settings.to_json())
    for info, same in ((short, False), (long, True)):
        prepared = pipeline.prepare(info, settings, tmp_path / WORK_DIR_NAME)
        file_id = state.fingerprint(info.path, info.size, info.mtime_ns)
        assert (prepared.work_id == state.work_id(file_id, by_settings_alone)) is same
    assert [chunk.frames for chunk in pipeline.plan_for(short, settings)] == [120, 120]


def test_chunk_statuses_are_read_where_redis_runs_no_scripts(clean_redis: str) -> None:
    """One Lua call reads them all; a Redis whose ACL denies scripts gets a pipeline instead."""
    admin = state.connect(clean_redis)
    file = jobs.FileSpec("/media/a.mkv", 0, "/media/.ute-work/w", EncodeSettings().to_json())
    work_id = state.work_id(state.fingerprint("/media/a.mkv", 1, 1), "{}")
    specs = [jobs.ChunkSpec(work_id, index, index * 24, 24, 0) for index in range(3)]
    submit.submit_chunks(admin, file, specs)
    admin.hset(Job.key_for(state.chunk_job_id(work_id, 1)), "status", JobStatus.FINISHED.value)
    admin.acl_setuser("noscripts", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"],
                      commands=["+@all", "-@scripting"])  # fmt: skip
    try:
        where = admin.connection_pool.connection_kwargs
        denied = redis.Redis(host=where["host"], port=where["port"], username="noscripts", password="pw")
        with pytest.raises(redis.exceptions.NoPermissionError):
            denied.eval("return 1", 0)
        for connection in (admin, denied):
            read = state.current_chunk_statuses(connection, work_id, [0, 1, 2, 7])
            queued, finished = JobStatus.QUEUED, JobStatus.FINISHED
            assert [status for _, status in read] == [queued, finished, queued, None]
    finally:
        admin.acl_deluser("noscripts")
