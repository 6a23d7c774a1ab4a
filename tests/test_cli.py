"""The installed console scripts, as a user types them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from media import make_clip

from ute import state
from ute.cli_parser import build_parser
from ute.logsetup import RICH_TERMINAL_ENV
from ute.settings import check_redis_url
from ute.worker import build_parser as worker_parser


def run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    executable = shutil.which(str(argv[0]))
    assert executable, f"{argv[0]} is not installed: pip install -e ."
    return subprocess.run([executable, *map(str, argv[1:])], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip


@pytest.mark.parametrize("script", ["ute", "ute-worker"])
def test_help_explains_the_commands(script: str) -> None:
    result = run(script, "--help")
    assert result.returncode == 0
    assert "redis" in result.stdout.lower() or "encode" in result.stdout.lower()


def test_encode_help_lists_the_encode_options() -> None:
    result = run("ute", "encode", "--help")
    for option in ("--crf", "--preset", "--x265-params", "--chunk-frames", "--workers",
                   "--redis-url"):  # fmt: skip
        assert option in result.stdout


def test_plan_json_matches_the_contract(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mkv", seconds=6, fps=24, gop=24)
    result = run("ute", "plan", clip, "--json", "--chunk-frames", "48")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert set(plan) == {"source", "frames", "fps", "keyframes", "chunks"}
    assert plan["frames"] == 144 and plan["fps"] == 24
    assert plan["keyframes"] == [0, 24, 48, 72, 96, 120]
    assert plan["chunks"] == [
        {"index": 0, "start": 0, "end": 48},
        {"index": 1, "start": 48, "end": 96},
        {"index": 2, "start": 96, "end": 144},
    ]


def test_plan_table_for_people(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mkv", seconds=2)
    result = run("ute", "plan", clip)
    assert result.returncode == 0 and "chunk" in result.stdout and "48" in result.stdout


def test_plan_of_a_missing_file_is_one_line(tmp_path: Path) -> None:
    result = run("ute", "plan", tmp_path / "missing.mkv")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "missing.mkv" in result.stderr


def test_a_redis_password_never_shows_in_messages() -> None:
    assert state.redacted("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert state.redacted("rediss://ute:s3cret@host:6380/0?ssl_ca_certs=/ca.pem") == (
        "rediss://ute:***@host:6380/0?ssl_ca_certs=/ca.pem")  # fmt: skip
    assert state.redacted("redis://host:6379/0") == "redis://host:6379/0"
    assert state.redacted("redis://host:6379/0?password=s3cret&ssl_ca_certs=/ca.pem") == (
        "redis://host:6379/0?password=***&ssl_ca_certs=/ca.pem")  # fmt: skip
    for argv in (["ute", "status", "--once"], ["ute-worker"]):
        result = run(*argv, "--redis-url", "redis://:s3cret@127.0.0.1:9/0")
        assert result.returncode != 0 and "redis://:***@127.0.0.1:9/0" in result.stderr
        assert "s3cret" not in result.stdout + result.stderr


HEAVY = ("av", "rq", "redis", "watchdog", "rich", "numpy", "psutil")


def heavy_modules_after(code: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """The heavy packages a fresh interpreter has loaded after running code (names, not seconds)."""
    probe = f"import json, sys\n{code}\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = json.loads(result.stdout.splitlines()[-1])
    return [name for name in heavy if name in loaded]


def test_the_parser_and_help_load_no_heavy_module() -> None:
    assert heavy_modules_after("import ute.cli\nute.cli.build_parser()") == []
    for argv in (["--help"], ["status", "--help"], ["serve", "--help"]):
        assert heavy_modules_after(f"import ute.cli\ntry:\n    ute.cli.main({argv!r})\n"
                                   "except SystemExit:\n    pass") == []  # fmt: skip


def test_status_json_loads_only_what_reads_redis(clean_redis: str) -> None:
    """`ute status --json` needs redis and rq (and rich, for the log), never PyAV, numpy or watchdog."""
    code = f"import ute.cli\nassert ute.cli.main(['status', '--json', '--redis-url', {clean_redis!r}]) == 0"
    assert heavy_modules_after(code, ("av", "numpy", "watchdog", "psutil")) == []


FORMS = "use redis://HOST:PORT/DB, rediss://… or unix:///path/to/socket"


@pytest.mark.parametrize("argv", [["ute", "status", "--json"], ["ute", "encode", "in.mkv", "-o", "out.mkv"],
                                  ["ute-worker"]])  # fmt: skip
def test_a_redis_url_of_another_scheme_is_one_line(argv: list[str]) -> None:
    result = run(*argv, "--redis-url", "http://:s3cret@127.0.0.1:9/0")
    assert result.returncode == 2
    assert result.stderr == f"{argv[0]}: error: --redis-url http://:***@127.0.0.1:9/0: {FORMS}\n"


def test_a_bad_redis_url_in_the_environment_is_named_as_such() -> None:
    result = subprocess.run([sys.executable, "-m", "ute.cli", "status", "--json"], capture_output=True,
                            text=True, env={**os.environ, "UTE_REDIS_URL": "127.0.0.1:6479"})  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == f"ute: error: $UTE_REDIS_URL 127.0.0.1:6479: {FORMS}\n"


def test_every_redis_client_defaults_to_the_redis_of_ute_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UTE_REDIS_URL", raising=False)
    parser = build_parser()
    for argv in (["status"], ["logs", "x"], ["dashboard"], ["pause", "x"], ["retry", "x"]):
        assert parser.parse_args(argv).redis_url == "redis://127.0.0.1:6479/0"
    assert worker_parser().parse_args([]).redis_url == "redis://127.0.0.1:6479/0"
    assert "redis://127.0.0.1:6479/0" in worker_parser().format_help()
    assert parser.parse_args(["encode", "a", "-o", "b"]).redis_url is None  # a private Redis


def test_the_three_forms_of_redis_url_pass() -> None:
    for url in ("redis://127.0.0.1:6479/0", "rediss://:s3cret@host:6380/0?ssl_ca_certs=/ca.pem",
                "unix:///run/redis/redis.sock?db=0"):  # fmt: skip
        check_redis_url(url)


def test_the_commands_on_one_file_take_the_id_ute_status_shows() -> None:
    parser = build_parser()
    for verb in ("logs", "pause", "resume", "cancel", "retry"):
        assert parser.parse_args([verb, "0123456789abcdef"]).file_id == "0123456789abcdef"
        usage = run("ute", verb, "--help").stdout
        assert usage.rstrip().endswith("ID") or " ID\n" in usage, usage
        assert "the file's id, as `ute status` shows it" in " ".join(usage.split()), usage


def test_move_takes_an_id_and_a_queue_and_refuses_an_unknown_file_in_one_line(clean_redis: str) -> None:
    args = build_parser().parse_args(["move", "0123456789abcdef", "high"])
    assert (args.file_id, args.queue) == ("0123456789abcdef", "high")
    bad_queue = run("ute", "move", "0123456789abcdef", "medium", "--redis-url", clean_redis)
    assert bad_queue.returncode == 2 and "invalid choice: 'medium'" in bad_queue.stderr
    unknown = run("ute", "move", "0123456789abcdef", "high", "--redis-url", clean_redis)
    assert unknown.returncode == 1
    assert unknown.stderr == "ute: error: no file 0123456789abcdef in Redis: `ute status` lists the ids\n"


def test_history_and_logs_show_the_files_id(tmp_path: Path) -> None:
    from ute.history import HISTORY_FILE_NAME, History, HistoryEntry
    from ute.jobspec import WORK_DIR_NAME

    file_id = state.fingerprint(str(tmp_path / "inbox" / "movie.mkv"), 1000, 1)
    history = History(tmp_path / "outbox" / WORK_DIR_NAME / HISTORY_FILE_NAME)
    history.add(HistoryEntry(file_id=file_id, source=str(tmp_path / "inbox" / "movie.mkv"), outcome="done",
                             output=str(tmp_path / "outbox" / "movie.mkv"), frames=240,
                             log="== chunk 0 (ute-x-chunk-00000): finished on w1\nencoded 240"))  # fmt: skip
    table = run("ute", "history", "--outbox", tmp_path / "outbox")
    assert table.returncode == 0, table.stderr
    [row] = [line for line in table.stdout.splitlines() if "movie.mkv" in line]
    assert row.split()[:2] == ["│", file_id], table.stdout
    nobody = "redis://127.0.0.1:9/0"  # Redis forgot the file: `ute logs` reads the history
    logs = run("ute", "logs", file_id, "--outbox", tmp_path / "outbox", "--redis-url", nobody)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.startswith(f"== file {file_id}: movie.mkv\n== chunk 0 "), logs.stdout


def test_encode_and_serve_verify_from_segments_unless_told_full() -> None:
    parser = build_parser()
    for command in (["encode", "a.mkv", "-o", "b.mkv"], ["serve"]):
        assert parser.parse_args(command).verify == "segments"
        assert parser.parse_args([*command, "--verify", "full"]).verify == "full"
        with pytest.raises(SystemExit):
            parser.parse_args([*command, "--verify", "none"])


@pytest.mark.parametrize(("environment", "rich_lines"), [({}, False), ({"FORCE_COLOR": "1"}, True)])
def test_logs_to_a_file_need_no_rich_unless_forced(environment: dict[str, str], rich_lines: bool) -> None:
    """A worker logs to a file: plain lines, and rich not even imported (30 ms of every start);
    FORCE_COLOR still gets rich's lines, as rich itself decides."""
    script = ("import logging, sys\nfrom ute.logsetup import setup_logging\nsetup_logging()\n"
              "logging.getLogger('ute.test').info('hello')\nprint('rich' in sys.modules)")  # fmt: skip
    plain_env = {k: v for k, v in os.environ.items() if k not in RICH_TERMINAL_ENV}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL, env={**plain_env, **environment})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(rich_lines)
    assert (" INFO ute.test: hello" in result.stderr) is not rich_lines
    assert "hello" in result.stderr
