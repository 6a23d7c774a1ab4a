"""The `ute` command line's arguments: every subcommand, option, default and help text.

Imports only ute.defaults, so that `ute --help` starts fast; the handlers in ute.cli import the rest."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ute import __version__, defaults

FILE_ID_HELP = "the file's id, as `ute status` shows it"


def _add_encode_options(parser: argparse.ArgumentParser) -> None:
    """Encode options default to None, so that only the ones given override the config files."""
    group = parser.add_argument_group(
        "encode options", "Also settable in TOML files; see README: Settings for the order.")
    group.add_argument("--config", type=Path, metavar="FILE",
                       help=f"settings file (default: ./{defaults.DEFAULT_CONFIG_NAME} if present)")
    group.add_argument("--crf", type=float,
                       help="x265 constant rate factor, 0-51, lower is better "
                            f"(default: {defaults.DEFAULT_CRF:g})")  # fmt: skip
    group.add_argument("--preset", choices=defaults.X265_PRESETS, metavar="PRESET",
                       help=f"x265 preset, ultrafast ... placebo (default: {defaults.DEFAULT_PRESET})")
    group.add_argument("--x265-params", metavar="K=V:K=V",
                       help="extra x265 parameters, e.g. lossless=1 or aq-mode=3:psy-rd=1")
    group.add_argument("--crop", metavar="W:H:X:Y", help="crop every frame, e.g. 1920:800:0:140")
    _add_chunk_frames(group)  # fmt: skip


def _add_chunk_frames(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--chunk-frames", type=int, default=None, metavar="N",
                        help="target chunk length in frames; chunks start on keyframes "
                             "(default: about 10 seconds of video)")  # fmt: skip


def _add_redis_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", default=defaults.redis_url_from_env() or defaults.DEFAULT_REDIS_URL,
                        metavar="URL", help="the Redis to read (default: $UTE_REDIS_URL, else the private "
                        f"Redis of `ute serve`, {defaults.DEFAULT_REDIS_URL})")  # fmt: skip


def _add_chunk_server(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "chunk server", "Workers that cannot see the coordinator's folders read each chunk's part of "
        "the source and send its segment back over HTTP(S), with a token valid for one file.")
    group.add_argument("--chunk-server-host", metavar="ADDR",
                       help="address it listens on (default: where Redis listens, as this machine "
                            "reaches it)")  # fmt: skip
    group.add_argument("--chunk-server-port", type=int, default=defaults.DEFAULT_CHUNK_SERVER_PORT,
                       metavar="PORT", help="(default: %(default)s, or a free port if that one is taken)")
    group.add_argument("--advertise-url", metavar="URL",
                       help="http(s)://HOST:PORT as workers reach it, where that is not the address it "
                            "listens on (a NAT, a container)")  # fmt: skip
    group.add_argument("--no-chunk-server", action="store_true",
                       help="serve no chunks: every worker must see the shared folder")


def _add_verify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verify", choices=defaults.VERIFY_MODES, default=defaults.VERIFY_SEGMENTS,
                        help="how the output is proved: from its segments' packets and what the workers "
                             "decoded (default), or 'full': by decoding all of it here too")  # fmt: skip


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
    encode_parser.add_argument("--workers", type=int, default=defaults.DEFAULT_LOCAL_WORKERS, metavar="N",
                               help="local workers to start; 0 = only remote ute-worker "
                                    "processes (default: %(default)s)")  # fmt: skip
    encode_parser.add_argument("--redis-url", default=defaults.redis_url_from_env(), metavar="URL",
                               help="use this Redis (default: $UTE_REDIS_URL, else start a "
                                    "private one on 127.0.0.1)")  # fmt: skip
    encode_parser.add_argument("--force", action="store_true", help="replace an existing OUTPUT")
    _add_verify(encode_parser)
    _add_chunk_server(encode_parser)
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
    serve_parser.add_argument("--plugin-timeout", type=float, default=defaults.DEFAULT_PLUGIN_TIMEOUT_SECONDS,
                              metavar="S", help="seconds one plugin may run (default: %(default)g)")
    serve_parser.add_argument("--workers", type=int, default=defaults.DEFAULT_LOCAL_WORKERS, metavar="N",
                              help="local workers to start beside the service; 0 = remote "
                                   "workers only (default: %(default)s)")  # fmt: skip
    serve_parser.add_argument("--redis-url", default=defaults.redis_url_from_env(), metavar="URL",
                              help="use this Redis (default: $UTE_REDIS_URL, else start a private "
                                   "one that keeps its data in OUTBOX/.ute-work/redis)")  # fmt: skip
    serve_parser.add_argument("--redis-port", type=int, default=defaults.DEFAULT_REDIS_PORT, metavar="PORT",
                              help="port of the private Redis (default: %(default)s)")  # fmt: skip
    serve_parser.add_argument("--redis-bind", default=defaults.DEFAULT_REDIS_BIND, metavar="ADDR",
                              help="address the private Redis listens on; other machines need a "
                                   "reachable one (default: %(default)s, this machine only)")  # fmt: skip
    serve_parser.add_argument("--settle-seconds", type=float, default=defaults.DEFAULT_SETTLE_SECONDS,
                              metavar="S", help="a file must stay unchanged this long before it is "
                              "probed (default: %(default)g)")  # fmt: skip
    serve_parser.add_argument("--stall-seconds", type=float, default=defaults.DEFAULT_STALL_SECONDS,
                              metavar="S", help="an incomplete or unreadable file is refused only "
                              "after staying unchanged this long (default: %(default)g)")  # fmt: skip
    _add_verify(serve_parser)
    _add_chunk_server(serve_parser)
    serve_parser.add_argument("--done-action", choices=defaults.DONE_ACTIONS, default="move",
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
        "chunk of the file ID (the id `ute status` shows), or of one chunk.",
    )  # fmt: skip
    logs_parser.add_argument("file_id", metavar="ID", help=FILE_ID_HELP)
    logs_parser.add_argument("--chunk", type=int, metavar="N", help="only chunk N")
    logs_parser.add_argument("--outbox", type=Path, default=Path("outbox"), metavar="DIR",
                             help="where to look in the history once Redis has forgotten the file "
                                  "(default: ./outbox)")  # fmt: skip
    _add_redis_url(logs_parser)

    for verb, what in (("pause", "stop queueing a file's chunks (running ones finish)"),
                       ("resume", "queue a paused file's chunks again"),
                       ("cancel", "stop a file's chunks and drop its work; the source stays in place"),
                       ("move", "move a file to queue high or low (running chunks finish where they are)"),
                       ("retry", "encode a failed or cancelled file again")):  # fmt: skip
        control_parser = commands.add_parser(verb, parents=[common], help=what,
                                             description=f"{what[0].upper()}{what[1:]}. ID is the "
                                             "id `ute status` shows.")  # fmt: skip
        control_parser.add_argument("file_id", metavar="ID", help=FILE_ID_HELP)
        if verb == "move":
            control_parser.add_argument("queue", choices=("high", "low"), metavar="QUEUE",
                                        help="high or low: the queue the file goes to")  # fmt: skip
        if verb == "retry":
            control_parser.add_argument("--inbox", type=Path, default=Path("inbox"), metavar="DIR",
                                        help="the service's inbox (default: ./inbox)")  # fmt: skip
            control_parser.add_argument("--outbox", type=Path, default=Path("outbox"), metavar="DIR",
                                        help="the service's outbox, for its history once Redis has "
                                             "forgotten the file (default: ./outbox)")  # fmt: skip
        _add_redis_url(control_parser)

    dashboard_parser = commands.add_parser(
        "dashboard", parents=[common], help="serve UTE's web page and rq-dashboard",
        description="Serve UTE's page (files, chunk maps, workers, swarm fps, history, logs; pause, "
        "resume, cancel, retry and move files) at / and rq-dashboard (queues, workers, jobs) at /rq/, "
        "for UTE's Redis. It listens on 127.0.0.1 unless --host says otherwise; with --username and "
        "--password (or $UTE_DASHBOARD_PASSWORD) it asks for them (HTTP basic auth).",
    )  # fmt: skip
    dashboard_parser.add_argument("--inbox", type=Path, default=Path("inbox"), metavar="DIR",
                                  help="the service's inbox, for retry (default: ./inbox)")
    dashboard_parser.add_argument("--outbox", type=Path, default=Path("outbox"), metavar="DIR",
                                  help="the service's outbox, for its history (default: ./outbox)")
    dashboard_parser.add_argument("--host", default="127.0.0.1",
                                  help="address to listen on (default: %(default)s, this machine only)")
    dashboard_parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                                  help="a host name the page is opened by, besides localhost and --host "
                                       "(others are refused: DNS rebinding); repeatable")  # fmt: skip
    dashboard_parser.add_argument("--port", type=int, default=defaults.DEFAULT_DASHBOARD_PORT,
                                  help="(default: %(default)s)")
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
