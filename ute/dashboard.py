"""`ute dashboard`: rq-dashboard for UTE's Redis, on loopback unless told otherwise, with basic auth.

rq-dashboard has no authentication of its own (only HTTP basic auth when given credentials),
accepts requeue requests by GET, and shows job descriptions and arguments unescaped: UTE keeps
file names out of all of them (see jobs.FileSpec), and this command warns when the dashboard is
reachable from other machines without credentials.
"""

from __future__ import annotations

import logging
from typing import Any

from rq import Worker
from rq.serializers import JSONSerializer

from ute import state
from ute.errors import UteError
from ute.state import redacted

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
ENV_PASSWORD = "UTE_DASHBOARD_PASSWORD"


def build_app(redis_url: str, username: str | None, password: str | None) -> Any:
    """The rq-dashboard Flask app for redis_url, reading UTE's JSON jobs, behind basic auth."""
    import rq_dashboard.web
    from rq_dashboard.cli import make_flask_app
    from rq_dashboard.web import config as dashboard_config
    from rq_dashboard.web import setup_rq_connection

    dashboard_config.serializer = JSONSerializer
    # Its Workers page reads each busy worker's job with rq's default (pickle) serializer, which
    # UTE's JSON jobs fail (a 500, "Loading…" for ever): it gets workers that read JSON.
    rq_dashboard.web.Worker = _JSONWorker  # type: ignore[attr-defined]
    app = make_flask_app(None, username, password, url_prefix="")
    app.config["RQ_DASHBOARD_REDIS_URL"] = redis_url
    with app.app_context():
        setup_rq_connection(app)
    state.register_queues(state.connect(redis_url))  # both queues listed before anything ran
    return app


class _JSONWorker(Worker):
    @classmethod
    def all(cls, *args: Any, **kwargs: Any) -> list[Worker]:  # type: ignore[override]
        kwargs.setdefault("serializer", JSONSerializer)
        return super().all(*args, **kwargs)


def serve(redis_url: str, host: str, port: int, username: str | None, password: str | None) -> None:
    """Serve the dashboard with waitress until interrupted: one clear line, and nothing announced,
    when the port is taken or Redis does not answer."""
    if bool(username) != bool(password):
        raise UteError(f"give both --username and --password (or {ENV_PASSWORD}), or neither")
    app = build_app(redis_url, username, password)
    from waitress import create_server

    try:
        server = create_server(app, host=host, port=port, threads=8)
    except OSError as error:
        raise UteError(f"cannot listen on {host}:{port}: {error.strerror}; pick another --port") from None
    if host not in LOOPBACK_HOSTS and not username:
        log.warning("the dashboard listens on %s WITHOUT a password: anyone who can reach it can "
                    "requeue and delete jobs; pass --username and --password", host)  # fmt: skip
    log.info("rq-dashboard for %s at http://%s:%d/%s", redacted(redis_url), host, port,
             " (basic auth)" if username else "")  # fmt: skip
    server.run()
