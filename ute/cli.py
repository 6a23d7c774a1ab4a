"""`ute`: the command line. Thin: it parses arguments and calls the modules that do the work."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from ute.cli_parser import build_parser
from ute.defaults import VERIFY_FULL
from ute.errors import StoppedError, UteError
from ute.history import find_history

if TYPE_CHECKING:
    from ute.settings import EncodeSettings
    from ute.transfer import ServerOptions

log = logging.getLogger("ute")

EXIT_FAILURE = 1
EXIT_USAGE = 2  # as argparse exits on a bad argument
EXIT_INTERRUPTED = 130


def run_plan(args: argparse.Namespace) -> int:
    from ute.pipeline import plan_for
    from ute.probe import probe
    from ute.settings import EncodeSettings

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
    from ute import encode_start
    from ute.stopping import StopSignals, exit_now

    if args.workers < 0:
        raise UteError("--workers must be 0 or more")
    settings, network = _encode_settings(args), _chunk_server(args)
    signals = StopSignals("ute encode", "the local workers finish their running chunks, then it stops")
    signals.install()
    try:
        source, output = args.source.absolute(), args.output.absolute()
        # Before the heavy imports below: the workers import theirs meanwhile.
        swarm = encode_start.start(source, output, force=args.force, workers=args.workers,
                                   redis_url=args.redis_url)  # fmt: skip
        try:
            from ute.encode import encode_file
        except BaseException:
            swarm.stop(cold=True)
            swarm.clear_away(keep_logs=False)
            raise
        report = encode_file(source, output, settings, workers=args.workers, redis_url=args.redis_url,
                             force=args.force, stop=signals.stop, full_verify=args.verify == VERIFY_FULL,
                             network=network, swarm=swarm)  # fmt: skip
    finally:
        if signals.abort.is_set():
            exit_now()
    change = (report.output_bytes / report.source_bytes - 1) * 100 if report.source_bytes else 0
    log.info("%s: done in %.1f s at %.1f fps, %d chunks, %d frames verified, size %+.1f%% -> %s",
             report.source.name, report.seconds, report.fps, report.chunks, report.frames,
             change, report.output)  # fmt: skip
    return 0


def _chunk_server(args: argparse.Namespace) -> ServerOptions:
    from ute.transfer import ServerOptions, check_base_url

    if args.advertise_url:
        try:
            check_base_url(args.advertise_url)
        except ValueError as error:
            raise UteError(f"--advertise-url {args.advertise_url}: {error}; give http(s)://HOST:PORT"
                           ) from None  # fmt: skip
    return ServerOptions(not args.no_chunk_server, args.chunk_server_host, args.chunk_server_port,
                         args.advertise_url)  # fmt: skip


def _encode_settings(args: argparse.Namespace) -> EncodeSettings:
    """Defaults, then the config file, then the options given on the command line."""
    from ute import config
    from ute.settings import EncodeSettings

    given = {key: getattr(args, key) for key in config.KEY_TYPES if getattr(args, key, None) is not None}
    return config.apply(EncodeSettings(), [*config.config_layer(args.config),
                                           config.Layer("the command line", given)])  # fmt: skip


def run_serve(args: argparse.Namespace) -> int:
    from ute.defaults import WORK_DIR_NAME
    from ute.inbox_files import ServeOptions
    from ute.serve import serve
    from ute.stopping import StopSignals, exit_now

    if args.workers < 0:
        raise UteError("--workers must be 0 or more")
    options = ServeOptions(
        inbox=args.inbox.absolute(), outbox=args.outbox.absolute(),
        work_root=args.outbox.absolute() / WORK_DIR_NAME, settings=_encode_settings(args),
        plugins_dir=args.plugins.absolute(), plugin_timeout=args.plugin_timeout,
        settle_seconds=args.settle_seconds, stall_seconds=args.stall_seconds,
        done_action=args.done_action, full_verify=args.verify == VERIFY_FULL,
    )  # fmt: skip
    signals = StopSignals("ute serve", "finishing the running chunks and files being muxed, then stopping")
    signals.install()
    serve(options, workers=args.workers, redis_url=args.redis_url, redis_port=args.redis_port,
          redis_bind=args.redis_bind, stop=signals.stop, abort=signals.abort,
          network=_chunk_server(args))  # fmt: skip
    if signals.abort.is_set():
        exit_now()
    return 0


def run_history(args: argparse.Namespace) -> int:
    history = find_history(args.outbox)
    entries = history.entries() if history else []
    if args.json:
        print(json.dumps([asdict(entry) for entry in entries], indent=2))
        return 0
    from rich.table import Table

    table = Table(title=f"UTE history ({history.path if history else args.outbox})")
    table.add_column("id", no_wrap=True, min_width=len("0123456789abcdef"))
    for column in ("finished", "source", "outcome", "frames", "fps", "time", "size", "output / error"):
        table.add_column(column)
    for entry in entries:
        change = entry.size_change_percent
        table.add_row(
            entry.file_id, time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.finished_at)),
            Path(entry.source).name, entry.outcome, str(entry.frames or ""),
            f"{entry.fps:.1f}" if entry.fps else "",
            f"{entry.encode_seconds:.0f} s" if entry.encode_seconds else "",
            f"{change:+.1f}%" if change is not None else "",
            Path(entry.output).name if entry.output else (entry.error or ""),
        )  # fmt: skip
    _print_table(table)
    return 0


def run_status(args: argparse.Namespace) -> int:
    from ute import snapshot, state

    connection = state.connect(args.redis_url)
    _check_redis(connection, args.redis_url)
    if args.json:
        print(json.dumps(snapshot.snapshot(connection)))
    else:
        from ute import tui

        tui.run(connection, once=args.once)
    return 0


def run_logs(args: argparse.Namespace) -> int:
    from ute import chunklogs, state

    connection = state.connect(args.redis_url)
    answering = connection if _redis_answers(connection) else None
    print(chunklogs.file_log(answering, args.file_id, find_history(args.outbox), args.chunk))
    return 0


def run_control(args: argparse.Namespace) -> int:
    from ute import control, state

    connection = state.connect(args.redis_url)
    _check_redis(connection, args.redis_url)
    if args.command == "retry":
        print(control.retry(connection, args.file_id, args.inbox, find_history(args.outbox)))
    elif args.command == "move":
        print(control.move(connection, args.file_id, args.queue))
    else:
        print(getattr(control, args.command)(connection, args.file_id))
    return 0


def run_dashboard(args: argparse.Namespace) -> int:
    from ute import dashboard, state

    _check_redis(state.connect(args.redis_url), args.redis_url)
    dashboard.serve(args.redis_url, args.host, args.port, args.username, args.password, args.inbox,
                    args.outbox, args.allow_host)
    return 0


def _redis_answers(connection: object) -> bool:
    try:
        return bool(connection.ping())  # type: ignore[attr-defined]
    except Exception:
        return False


def _check_redis(connection: object, url: str) -> None:
    from ute.state import redacted

    if not _redis_answers(connection):
        raise UteError(f"cannot reach Redis at {redacted(url)}: is `ute serve` running? (or pass "
                       "--redis-url)")  # fmt: skip


def _check_redis_url(args: argparse.Namespace) -> None:
    url = getattr(args, "redis_url", None)
    if url is not None:
        from ute.settings import check_redis_url

        check_redis_url(url)


def main(argv: list[str] | None = None) -> int:
    return _run(build_parser().parse_args(argv))


def entry() -> NoReturn:
    """The `ute` command. `ute encode` leaves without tearing the interpreter down, which took
    0.1 s with PyAV, numpy and rq loaded (4% of a 10 s clip's run): by then it has reaped every
    process it started and closed every file it wrote."""
    args = build_parser().parse_args()
    status = _run(args)
    if args.command == "encode":
        from ute.stopping import leave_now

        leave_now(status)
    sys.exit(status)


def _run(args: argparse.Namespace) -> int:
    try:
        _check_redis_url(args)
    except UteError as error:
        print(f"ute: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    from ute.logsetup import setup_logging

    setup_logging(args.log_level, getattr(args, "log_file", None))
    handlers = {"plan": run_plan, "encode": run_encode, "serve": run_serve, "history": run_history,
                "status": run_status, "logs": run_logs, "dashboard": run_dashboard,
                "pause": run_control, "resume": run_control, "cancel": run_control, "retry": run_control,
                "move": run_control}
    try:
        return handlers[args.command](args)
    except StoppedError as error:
        print(f"ute: {error}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UteError as error:
        print(f"ute: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("ute: interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    entry()
