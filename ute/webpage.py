"""UTE's own page at `/` of `ute dashboard`: files with their chunk maps, workers, swarm fps,
history, a file's log, and pause/resume/cancel/retry/move as POSTs with a CSRF token.

The page is static HTML and JavaScript that reads `/api/state` once a second and builds the DOM
with textContent only: names reach the browser as JSON strings, never as markup.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import redis
from flask import Blueprint, Response, abort, jsonify, request

from ute import chunklogs, control, pagedata
from ute.errors import UteError
from ute.history import find_history

CSRF_HEADER = "X-UTE-CSRF"
CSRF_PLACEHOLDER = "__UTE_CSRF_TOKEN__"
FILE_ID = re.compile(r"[0-9a-f]{16}")
# The page loads only its own script and style: an injected tag would not run.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def make_blueprint(connection: redis.Redis, inbox: Path, outbox: Path, csrf_token: str) -> Blueprint:
    page = Blueprint("ute_page", __name__, static_folder="web", static_url_path="/static/ute")
    index_html = resources.files("ute").joinpath("web/index.html").read_text(encoding="utf-8")
    index_html = index_html.replace(CSRF_PLACEHOLDER, csrf_token)  # hex: nothing to escape

    actions: dict[str, Callable[[str, dict[str, Any]], str]] = {
        "pause": lambda file_id, _: control.pause(connection, file_id),
        "resume": lambda file_id, _: control.resume(connection, file_id),
        "cancel": lambda file_id, _: control.cancel(connection, file_id),
        "retry": lambda file_id, _: control.retry(connection, file_id, inbox, find_history(outbox)),
        "move": lambda file_id, body: control.move(connection, file_id, str(body.get("queue", ""))),
    }

    @page.after_request
    def _lock_down(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["Cache-Control"] = "no-store"
        return response

    @page.get("/")
    def index() -> Response:
        return Response(index_html, mimetype="text/html")

    @page.get("/api/state")
    def page_state() -> Any:
        return _answer(lambda: jsonify(pagedata.page_state(connection, find_history(outbox))))

    @page.get("/api/files/<file_id>/log")
    def file_log(file_id: str) -> Any:
        _check_file_id(file_id)
        chunk = request.args.get("chunk", type=int)

        def log_text() -> Response:
            history = find_history(outbox)
            try:
                text = chunklogs.file_log(connection, file_id, history, chunk)
            except redis.exceptions.RedisError:  # as `ute logs`: the history still has it
                text = chunklogs.file_log(None, file_id, history, chunk)
            return Response(text, mimetype="text/plain")

        return _answer(log_text)

    @page.post("/api/files/<file_id>/<action>")
    def act(file_id: str, action: str) -> Any:
        _check_file_id(file_id)
        given = request.headers.get(CSRF_HEADER, "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, csrf_token.encode()):
            return jsonify(error="this page is out of date (the dashboard restarted): reload it"), 403
        if action not in actions:
            return jsonify(error=f"no action {action!r}"), 404
        body = request.get_json(silent=True)
        body = body if isinstance(body, dict) else {}
        return _answer(lambda: jsonify(message=actions[action](file_id, body)))

    return page


def _check_file_id(file_id: str) -> None:
    if not FILE_ID.fullmatch(file_id):
        abort(404)


def _answer(respond: Callable[[], Any]) -> Any:
    """respond(), or one line saying what went wrong: a refused request (409), Redis away (503)."""
    try:
        return respond()
    except UteError as error:
        return jsonify(error=str(error)), 409
    except redis.exceptions.RedisError as error:
        return jsonify(error=f"Redis does not answer ({type(error).__name__}): is `ute serve` running?"), 503
