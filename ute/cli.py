"""`ute`: the command line. Thin: it parses arguments and calls the modules that do the work."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

from ute import __version__, config
from ute.errors import UteError
from ute.logs import setup_logging
from ute.plugins import DEFAULT_PLUGIN_TIMEOUT_SECONDS
from ute.service import (
    DEFAULT_REDIS_PORT,
    DEFAULT_SETTLE_SECONDS,
    DEFAULT_STALL_SECONDS,
    DONE_ACTIONS,
    SERVE_REDIS_URL,
)
from ute.settings import (
    DEFAULT_CRF,
    DEFAULT_PRESET,
    X265_PRESETS,
    EncodeSettings,
    redis_url_from_env,
)

log = logging.getLogger("ute")

DEFAULT_LOCAL_WORKERS = 2
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130


def _add_encode_options(parser: argparse.ArgumentParser) -> None:
    """Encode options default to None, so that only the ones given override the config files."""
    group = parser.add_argument_group(
        "encode options", "Also settable in TOML files; see README: Settings for the order.")
    group.add_argument("--config", type=Path, metavar="FILE",
                       help=f"settings file (default: ./{config.DEFAULT_CONFIG_NAME} if present)")
    group.add_argument("--crf", type=float,
                       help=f"x265 constant rate factor, 0-51, lower is better (default: {DEFAULT_CRF:g})")
    group.add_argument("--preset", choices=X265_PRESETS, metavar="PRESET",
                       help=f"x265 preset, ultrafast ... placebo (default: {DEFAULT_PRESET})")
    group.add_argument("--x265-params", metavar="K=V:K=V",
                       help="extra x265 parameters, e.g. lossless=1 or aq-mode=3:psy-rd=1")
    group.add_argument("--crop", metavar="W:H:X:Y", help="crop every frame, e.g. 1920:800:0:140")
    _add_chunk_frames(group)  # fmt: skip


def _add_chunk_frames(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--chunk-frames", type=int, default=None, metavar="N",
                        help="target chunk length in frames; chunks start on keyframes "
                             "(default: about 10 seconds of video)")  # fmt: skip


def _add_redis_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", default=redis_url_from_env() or SERVE_REDIS_URL, metavar="URL",
                        help="the Redis to read (default: $UTE_REDIS_URL, else the private Redis "
                             "of `ute serve`, %(default)s)")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ute",
        description="UTE, the Ultima Thule Encoder: cuts a video into keyframe-aligned chunks, "
        "encodes them with x265 on rq workers anywhere, and muxes a frame-exact Matroska file "
        "that keeps every other stream of the source.",
    )
    parser.add_argument("--version", action="version", version=f"ute {__version__}")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default: INFO)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", default=argparse.SUPPRESS,
                        help="DEBUG, INFO, WARNING (default: INFO)")  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    plan_parser = commands.add_parser(
        "plan", parents=[common], help="show how a file would be cut into chunks",
        description="Probe SOURCE and print its keyframe-aligned chunks (end is exclusive).",
    )  # fmt: skip
    plan_parser.add_argument("source", type=Path, metavar="SOURCE")
    _add_chunk_frames(plan_parser)
    plan_parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    encode_parser = commands.add_parser(
        "encode", parents=[common], help="encode one file through rq workers",
        description="Encode SOURCE into OUTPUT (Matroska) through rq workers. Without "
        "--redis-url or $UTE_REDIS_URL a private Redis server is started and stopped again. "
        "Exits 0 only when the output decodes to exactly the source's frames and keeps all of "
        "its streams; an interrupted run resumes from the chunks already done.",
    )  # fmt: skip
    encode_parser.add_argument("source", type=Path, metavar="SOURCE")
    encode_parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUTPUT",
                               help="where the .mkv goes")  # fmt: skip
    encode_parser.add_argument("--workers", type=int, default=DEFAULT_LOCAL_WORKERS, metavar="N",
                               help="local workers to start; 0 = only remote ute-worker "
                                    "processes (default: %(default)s)")  # fmt: skip
    encode_parser.add_argument("--redis-url", default=redis_url_from_env(), metavar="URL",
                               help="use this Redis (default: $UTE_REDIS_URL, else start a "
                                    "private one on 127.0.0.1)")  # fmt: skip
    encode_parser.add_argument("--force", action="store_true", help="replace an existing OUTPUT")
    _add_encode_options(encode_parser)

    serve_parser = commands.add_parser(
        "serve", parents=[common], help="run the inbox service: encode every video dropped into the inbox",
        description="Watch INBOX and encode every video that finishes arriving there into "
        "OUTBOX/<name>.mkv. Files in INBOX/high/ go through the high-priority queue. A source "
        "moves to INBOX/done/ only after its output is verified; a file that cannot be encoded "
        "moves to INBOX/failed/ with <name>.error.txt saying why. Stop with Ctrl-C or SIGTERM; "
        "start again and unfinished files resume where they were.",
    )  # fmt: skip
    serve_parser.add_argument("--inbox", type=Path, default=Path("inbox"), metavar="DIR",
                              help="the folder to watch (default: ./inbox)")  # fmt: skip
    serve_parser.add_argument("--outbox", type=Path, default=Path("outbox"), metavar="DIR",
                              help="where results go (default: ./outbox)")  # fmt: skip
    serve_parser.add_argument("--plugins", type=Path, default=Path("plugins"), metavar="DIR",
                              help="plugin folder with pre/ and post/ (default: ./plugins; "
                                   "a missing folder means no plugins)")  # fmt: skip
    serve_parser.add_argument("--plugin-timeout", type=float, default=DEFAULT_PLUGIN_TIMEOUT_SECONDS,
                              metavar="S", help="seconds one plugin may run (default: %(default)g)")
    serve_parser.add_argument("--workers", type=int, default=DEFAULT_LOCAL_WORKERS, metavar="N",
                              help="local workers to start beside the service; 0 = remote "
                                   "workers only (default: %(default)s)")  # fmt: skip
    serve_parser.add_argument("--redis-url", default=redis_url_from_env(), metavar="URL",
                              help="use this Redis (default: $UTE_REDIS_URL, else start a private "
                                   "one that keeps its data in OUTBOX/.ute-work/redis)")  # fmt: skip
    serve_parser.add_argument("--redis-port", type=int, default=DEFAULT_REDIS_PORT, metavar="PORT",
                              help="port of the private Redis (default: %(default)s)")  # fmt: skip
    serve_parser.add_argument("--redis-bind", default="127.0.0.1", metavar="ADDR",
                              help="address the private Redis listens on; other machines need a "
                                   "reachable one (default: %(default)s, this machine only)")  # fmt: skip
    serve_parser.add_argument("--settle-seconds", type=float, default=DEFAULT_SETTLE_SECONDS,
                              metavar="S", help="a file must stay unchanged this long before it is "
                              "probed (default: %(default)g)")  # fmt: skip
    serve_parser.add_argument("--stall-seconds", type=float, default=DEFAULT_STALL_SECONDS,
                              metavar="S", help="an incomplete or unreadable file is refused only "
                              "after staying unchanged this long (default: %(default)g)")  # fmt: skip
    serve_parser.add_argument("--done-action", choices=DONE_ACTIONS, default="move",
                              help="what happens to a source after its output is verified: move "
                                   "it to INBOX/done/, delete it, or keep it (default: move)")  # fmt: skip
    serve_parser.add_argument("--log-file", type=Path, metavar="FILE",
                              help="also write the log to FILE")  # fmt: skip
    _add_encode_options(serve_parser)

    status_parser = commands.add_parser(
        "status", parents=[common], help="watch the swarm: files, workers, fps, ETA",
        description="Show every file (progress, fps, ETA) and every live worker (chunk, fps, CPU, "
        "memory). In a terminal it refreshes every second until you press q or Ctrl-C.",
    )  # fmt: skip
    status_parser.add_argument("--json", action="store_true", help="print one JSON snapshot and exit")
    status_parser.add_argument("--once", action="store_true", help="draw once and exit")
    _add_redis_url(status_parser)

    logs_parser = commands.add_parser(
        "logs", parents=[common], help="print a file's chunk logs",
        description="Print the encoder log (x265's summary or the error), timing and worker of every "
        "chunk of the file JOB_ID (the id `ute status` shows), or of one chunk.",
    )  # fmt: skip
    logs_parser.add_argument("job_id", metavar="JOB_ID")
    logs_parser.add_argument("--chunk", type=int, metavar="N", help="only chunk N")
    logs_parser.add_argument("--outbox", type=Path, default=Path("outbox"), metavar="DIR",
                             help="where to look in the history once Redis has forgotten the file "
                                  "(default: ./outbox)")  # fmt: skip
    _add_redis_url(logs_parser)

    for verb, what in (("pause", "stop queueing a file's chunks (running ones finish)"),
                       ("resume", "queue a paused file's chunks again"),
                       ("cancel", "stop a file's chunks and drop its work; the source stays in place"),
                       ("retry", "encode a failed or cancelled file again")):  # fmt: skip
        control_parser = commands.add_parser(verb, parents=[common], help=what,
                                             description=f"{what[0].upper()}{what[1:]}. JOB is the "
                                             "id `ute status` shows.")  # fmt: skip
        control_parser.add_argument("job_id", metavar="JOB")
        if verb == "retry":
            control_parser.add_argument("--inbox", type=Path, default=Path("inbox"), metavar="DIR",
                                        help="the service's inbox (default: ./inbox)")  # fmt: skip
        _add_redis_url(control_parser)

    dashboard_parser = commands.add_parser(
        "dashboard", parents=[common], help="serve rq-dashboard for UTE's Redis",
        description="Serve rq-dashboard (queues, workers, jobs) for UTE's Redis. It listens on "
        "127.0.0.1 unless --host says otherwise; with --username and --password (or "
        "$UTE_DASHBOARD_PASSWORD) it asks for them (HTTP basic auth).",
    )  # fmt: skip
    dashboard_parser.add_argument("--host", default="127.0.0.1",
                                  help="address to listen on (default: %(default)s, this machine only)")
    dashboard_parser.add_argument("--port", type=int, default=9181, help="(default: %(default)s)")
    dashboard_parser.add_argument("--username", help="HTTP basic auth user")
    dashboard_parser.add_argument("--password", default=os.environ.get("UTE_DASHBOARD_PASSWORD"),
                                  help="HTTP basic auth password (default: $UTE_DASHBOARD_PASSWORD)")
    _add_redis_url(dashboard_parser)

    history_parser = commands.add_parser(
        "history", parents=[common], help="list finished and failed files",
        description="Show the history of files `ute serve` finished or refused.",
    )  # fmt: skip
    history_parser.add_argument("--outbox", type=Path, default=Path("outbox"), metavar="DIR",
                                help="the service's outbox (default: ./outbox)")  # fmt: skip
    history_parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def run_plan(args: argparse.Namespace) -> int:
    from ute.pipeline import plan_for
    from ute.probe import probe

    info = probe(args.source)
    chunks = plan_for(info, EncodeSettings(chunk_frames=args.chunk_frames))
    if args.json:
        print(json.dumps({
            "source": str(args.source),
            "frames": info.frame_count,
            "fps": info.fps,
            "keyframes": list(info.keyframes),
            "chunks": [{"index": c.index, "start": c.start, "end": c.end} for c in chunks],
        }))  # fmt: skip
        return 0
    from rich.table import Table

    table = Table(title=f"{args.source.name}: {info.frame_count} frames at {info.fps:.3f} fps, "
                        f"{len(info.keyframes)} keyframes")  # fmt: skip
    for column in ("chunk", "start", "end", "frames", "seconds"):
        table.add_column(column, justify="right")
    for chunk in chunks:
        table.add_row(str(chunk.index), str(chunk.start), str(chunk.end), str(chunk.frames),
                      f"{chunk.frames / info.fps:.2f}" if info.fps else "?")  # fmt: skip
    _print_table(table)
    return 0


def _print_table(table: object) -> None:
    """Rich tables on stdout: as wide as the terminal, or 120 columns into a pipe."""
    from rich.console import Console

    Console(width=None if sys.stdout.isatty() else 120).print(table)


def run_encode(args: argparse.Namespace) -> int:
    from ute.coordinator import encode_file

    if args.workers < 0:
        raise UteError("--workers must be 0 or more")
    report = encode_file(args.source, args.output, _encode_settings(args), workers=args.workers,
                         redis_url=args.redis_url, force=args.force)  # fmt: skip
    change = (report.output_bytes / report.source_bytes - 1) * 100 if report.source_bytes else 0
    log.info("%s: done in %.1f s at %.1f fps, %d chunks, %d frames verified, size %+.1f%% -> %s",
             report.source.name, report.seconds, report.fps, report.chunks, report.frames,
             change, report.output)  # fmt: skip
    return 0


def _encode_settings(args: argparse.Namespace) -> EncodeSettings:
    """Defaults, then the config file, then the options given on the command line."""
    given = {key: getattr(args, key) for key in config.KEY_TYPES if getattr(args, key, None) is not None}
    return config.apply(EncodeSettings(), [*config.config_layer(args.config),
                                           config.Layer("the command line", given)])  # fmt: skip


def run_serve(args: argparse.Namespace) -> int:
    from ute.coordinator import WORK_DIR_NAME
    from ute.service import ServeOptions, serve

    if args.workers < 0:
        raise UteError("--workers must be 0 or more")
    options = ServeOptions(
        inbox=args.inbox.absolute(), outbox=args.outbox.absolute(),
        work_root=args.outbox.absolute() / WORK_DIR_NAME, settings=_encode_settings(args),
        plugins_dir=args.plugins.absolute(), plugin_timeout=args.plugin_timeout,
        settle_seconds=args.settle_seconds, stall_seconds=args.stall_seconds,
        done_action=args.done_action,
    )  # fmt: skip
    stop, abort = threading.Event(), threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        if stop.is_set():
            log.info("%s again: aborting now; start ute serve again to resume",
                     signal.Signals(signum).name)  # fmt: skip
            abort.set()
            return
        log.info("%s: finishing the running chunks, then stopping; start ute serve again to resume",
                 signal.Signals(signum).name)  # fmt: skip
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    serve(options, workers=args.workers, redis_url=args.redis_url, redis_port=args.redis_port,
          redis_bind=args.redis_bind, stop=stop, abort=abort)  # fmt: skip
    return 0


def run_history(args: argparse.Namespace) -> int:
    from ute.coordinator import WORK_DIR_NAME
    from ute.history import HISTORY_FILE_NAME, History

    path = args.outbox / WORK_DIR_NAME / HISTORY_FILE_NAME
    entries = History(path).entries() if path.exists() else []
    if args.json:
        print(json.dumps([asdict(entry) for entry in entries], indent=2))
        return 0
    from rich.table import Table

    table = Table(title=f"UTE history ({path})")
    for column in ("finished", "source", "outcome", "frames", "fps", "time", "size", "output / error"):
        table.add_column(column)
    for entry in entries:
        change = entry.size_change_percent
        table.add_row(
            time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.finished_at)),
            Path(entry.source).name, entry.outcome, str(entry.frames or ""),
            f"{entry.fps:.1f}" if entry.fps else "",
            f"{entry.encode_seconds:.0f} s" if entry.encode_seconds else "",
            f"{change:+.1f}%" if change is not None else "",
            Path(entry.output).name if entry.output else (entry.error or ""),
        )  # fmt: skip
    _print_table(table)
    return 0


def run_status(args: argparse.Namespace) -> int:
    from ute import state, status, tui

    connection = state.connect(args.redis_url)
    _check_redis(connection, args.redis_url)
    if args.json:
        print(json.dumps(status.snapshot(connection)))
    else:
        tui.run(connection, once=args.once)
    return 0


def run_logs(args: argparse.Namespace) -> int:
    from ute import chunklogs, state
    from ute.coordinator import WORK_DIR_NAME
    from ute.history import HISTORY_FILE_NAME, History

    connection = state.connect(args.redis_url)
    record = state.file_record(connection, args.job_id) if _redis_answers(connection) else None
    if record and record.get("file_id"):
        chunk_count = len(json.loads(record.get("chunk_frames", "[]")))
        logs = chunklogs.collect(connection, record["file_id"], chunk_count)
        if args.chunk is not None:
            logs = [log for log in logs if log.index == args.chunk]
            if not logs:
                raise UteError(f"{args.job_id} has no chunk {args.chunk} (it has {chunk_count})")
        print(chunklogs.render_all(logs))
        return 0
    history_path = args.outbox / WORK_DIR_NAME / HISTORY_FILE_NAME
    entries = [e for e in History(history_path).entries() if e.file_id == args.job_id] \
        if history_path.exists() else []  # fmt: skip
    if not entries:
        raise UteError(f"no file {args.job_id} in Redis ({args.redis_url}) or in {history_path}")
    text = entries[-1].log
    if args.chunk is not None:
        blocks = text.split("\n== chunk ")
        text = "\n".join(b if b.startswith("== chunk") else "== chunk " + b for b in blocks
                         if b.startswith((f"{args.chunk} ", f"== chunk {args.chunk} ")))  # fmt: skip
    print(text)
    return 0


def run_control(args: argparse.Namespace) -> int:
    from ute import control, state

    connection = state.connect(args.redis_url)
    _check_redis(connection, args.redis_url)
    if args.command == "retry":
        print(control.retry(connection, args.job_id, args.inbox))
    else:
        print(getattr(control, args.command)(connection, args.job_id))
    return 0


def run_dashboard(args: argparse.Namespace) -> int:
    from ute import dashboard

    dashboard.serve(args.redis_url, args.host, args.port, args.username, args.password)
    return 0


def _redis_answers(connection: object) -> bool:
    try:
        return bool(connection.ping())  # type: ignore[attr-defined]
    except Exception:
        return False


def _check_redis(connection: object, url: str) -> None:
    if not _redis_answers(connection):
        raise UteError(f"cannot reach Redis at {url}: is `ute serve` running? (or pass --redis-url)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, getattr(args, "log_file", None))
    handlers = {"plan": run_plan, "encode": run_encode, "serve": run_serve, "history": run_history,
                "status": run_status, "logs": run_logs, "dashboard": run_dashboard,
                "pause": run_control, "resume": run_control, "cancel": run_control, "retry": run_control}
    try:
        return handlers[args.command](args)
    except UteError as error:
        print(f"ute: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("ute: interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
