"""`ute dashboard`: UTE's own page at `/` and rq-dashboard under `/rq/`, for UTE's Redis, on
loopback unless told otherwise, both behind the same basic auth.

rq-dashboard has no authentication of its own, accepts requeue requests by GET, and shows job
descriptions and arguments unescaped: UTE keeps file names out of all of them (see
jobs.FileSpec), and this command warns when the dashboard is reachable from other machines
without credentials.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rq import Worker
from rq.serializers import JSONSerializer

from ute import state
from ute.errors import UteError
from ute.state import redacted

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
ENV_PASSWORD = "UTE_DASHBOARD_PASSWORD"
RQ_DASHBOARD_PATH = "/rq"


def build_app(redis_url: str, username: str | None, password: str | None, inbox: Path = Path("inbox"),
              outbox: Path = Path("outbox"), hosts: frozenset[str] | None = None) -> Any:  # fmt: skip
    """UTE's page and rq-dashboard (reading UTE's JSON jobs) in one WSGI app behind basic auth
    and RequestGuard; hosts: the names it may be reached by (None: any)."""
    import rq_dashboard.web
    from rq_dashboard.cli import make_flask_app
    from rq_dashboard.web import config as dashboard_config
    from rq_dashboard.web import setup_rq_connection

    from ute.webpage import make_blueprint

    dashboard_config.serializer = JSONSerializer
    # Its Workers page reads each busy worker's job with rq's default (pickle) serializer, which
    # UTE's JSON jobs fail (a 500, "Loading…" for ever): it gets workers that read JSON.
    rq_dashboard.web.Worker = _JSONWorker  # type: ignore[attr-defined]
    app = make_flask_app(None, None, None, url_prefix=RQ_DASHBOARD_PATH)
    app.config["RQ_DASHBOARD_REDIS_URL"] = redis_url
    with app.app_context():
        setup_rq_connection(app)
    connection = state.connect(redis_url)
    state.register_queues(connection)  # both queues listed before anything ran
    app.register_blueprint(make_blueprint(connection, inbox, outbox, secrets.token_hex(32)))

    @app.after_request
    def _no_framing(response: Any) -> Any:  # its buttons act: no other site may frame them
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    wsgi_app = BasicAuth(app.wsgi_app, username, password) if username and password else app.wsgi_app
    return RequestGuard(wsgi_app, hosts)


def allowed_hosts(bound_host: str, also: Iterable[str] = ()) -> frozenset[str] | None:
    """The host names a dashboard bound to bound_host may be reached by: loopback's, its own
    address and those named; any (None) when it listens on every address and none are named."""
    if bound_host in WILDCARD_HOSTS and not list(also):
        return None
    return frozenset({*LOOPBACK_HOSTS, *also} | ({bound_host} - set(WILDCARD_HOSTS)))


class RequestGuard:
    """WSGI middleware that refuses what a hostile web page can make a browser send: a Host the
    dashboard is not reached by (DNS rebinding: a site that resolves its own name to 127.0.0.1),
    a cross-site POST (rq-dashboard's buttons carry no CSRF token), and rq-dashboard's
    requeue-everything by GET."""

    def __init__(self, app: Callable[..., Iterable[bytes]], hosts: frozenset[str] | None) -> None:
        self.app = app
        self.hosts = hosts

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        refusal = self._refusal(environ)
        if refusal is None:
            return self.app(environ, start_response)
        start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8")])
        return [f"UTE dashboard: {refusal}\n".encode()]

    def _refusal(self, environ: dict[str, Any]) -> str | None:
        host = environ.get("HTTP_HOST", "")
        if self.hosts is not None and urlsplit(f"//{host}").hostname not in self.hosts:
            return "this address is not one the dashboard is reached by (see --allow-host)"
        if environ.get("REQUEST_METHOD", "GET") in SAFE_METHODS:
            if environ.get("PATH_INFO", "").startswith(f"{RQ_DASHBOARD_PATH}/requeue/"):
                return "requeue with the page's button (a POST)"
            return None
        origin = environ.get("HTTP_ORIGIN")
        if environ.get("HTTP_SEC_FETCH_SITE", "same-origin") not in ("same-origin", "none") or (
            origin and urlsplit(origin).netloc != host
        ):
            return "a request from another site"
        return None


class BasicAuth:
    """WSGI middleware: every path (UTE's page, its API, rq-dashboard) asks for the credentials."""

    def __init__(self, app: Callable[..., Iterable[bytes]], username: str, password: str) -> None:
        self.app = app
        self.expected = f"{username}:{password}".encode()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self._allowed(environ.get("HTTP_AUTHORIZATION", "")):
            return self.app(environ, start_response)
        start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="UTE", charset="UTF-8"'),
                                            ("Content-Type", "text/plain; charset=utf-8")])  # fmt: skip
        return [b"UTE dashboard: give the user name and password of `ute dashboard --username`\n"]

    def _allowed(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self.expected)


class _JSONWorker(Worker):
    @classmethod
    def all(cls, *args: Any, **kwargs: Any) -> list[Worker]:  # type: ignore[override]
        kwargs.setdefault("serializer", JSONSerializer)
        return super().all(*args, **kwargs)


def serve(redis_url: str, host: str, port: int, username: str | None, password: str | None,
          inbox: Path = Path("inbox"), outbox: Path = Path("outbox"), also_hosts: Iterable[str] = ()
          ) -> None:  # fmt: skip
    """Serve the dashboard with waitress until interrupted: one clear line, and nothing announced,
    when the port is taken or Redis does not answer."""
    if bool(username) != bool(password):
        raise UteError(f"give both --username and --password (or {ENV_PASSWORD}), or neither")
    app = build_app(redis_url, username, password, inbox, outbox, allowed_hosts(host, also_hosts))
    from waitress import create_server

    try:
        server = create_server(app, host=host, port=port, threads=8)
    except OSError as error:
        raise UteError(f"cannot listen on {host}:{port}: {error.strerror}; pick another --port") from None
    if host not in LOOPBACK_HOSTS and not username:
        log.warning("the dashboard listens on %s WITHOUT a password: anyone who can reach it can "
                    "requeue and delete jobs; pass --username and --password", host)  # fmt: skip
    log.info("UTE's dashboard for %s at http://%s:%d/ (rq-dashboard at %s/)%s", redacted(redis_url), host,
             port, RQ_DASHBOARD_PATH, ", basic auth" if username else "")  # fmt: skip
    server.run()
