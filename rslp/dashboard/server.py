"""``rslp dashboard``: serve the live page of one job (or a rolling root) over HTTP, read-only.

The standard library's threading server: the page, its script and style (package
data, nothing from a CDN), the last view as JSON, the map's layout, and, once the job
is finished, its outputs and a thumbnail. Every request is answered from memory
(:class:`~rslp.dashboard.snapshot.Snapshots` reads the job root in the background).

What keeps it safe to leave running: only GET and HEAD are served (the page never
changes a job); it binds loopback by default and then answers only requests that name
a loopback host (a web page elsewhere cannot reach it through DNS rebinding); bound to
any other address it asks for a random token, printed once at start; every response
carries a Content-Security-Policy that allows no script but its own, so even a
string that slipped into markup would not run.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket
import threading
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import structlog
from upath import UPath

from rslp.dashboard.snapshot import Encoded, Snapshots
from rslp.jobroot import JobRoot

logger = structlog.get_logger(__name__)

#: The page and its parts, by URL path: (file under static/, content type).
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
COOKIE = "rslp_dashboard_token"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
CHUNK = 1 << 20


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def request_host(header: str) -> str:
    """The host part of a Host header: ``[::1]:8000`` -> ``[::1]``, ``localhost:8000`` -> ``localhost``."""
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0]


class DashboardServer(ThreadingHTTPServer):
    """The HTTP server; ``token`` is None on loopback, where the Host check stands in for it."""

    daemon_threads = True

    def __init__(self, snapshots: Snapshots, host: str, port: int, token: str | None) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), Handler)
        self.snapshots, self.token, self.host = snapshots, token, host
        folder = files("rslp.dashboard") / "static"
        self.static = {path: (folder / name).read_bytes() for path, (name, _) in STATIC.items()}

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        """The page's address; with the token when one is needed (the one place it is printed)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def start(self) -> threading.Thread:
        """Serve in a background thread (tests and the benchmark); :meth:`close` stops it."""
        thread = threading.Thread(target=self.serve_forever, name="dashboard-http", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    """GET and HEAD of the page, its view and its files; every other method is refused."""

    server: DashboardServer
    protocol_version = "HTTP/1.1"
    server_version = "rslp-dashboard"
    sys_version = ""

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _refuse(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"the dashboard is read-only\n", "text/plain", {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("dashboard_request", line=format % args)

    def _answer(self, head: bool) -> None:
        url = urlsplit(self.path)
        if not self._allowed(url.query):
            return
        snapshots = self.server.snapshots
        if url.path in STATIC:
            extra = {}
            if self.server.token:  # the page's own requests carry the token from here on
                extra["Set-Cookie"] = f"{COOKIE}={self.server.token}; HttpOnly; SameSite=Strict; Path=/"
            self._send(HTTPStatus.OK, self.server.static[url.path], STATIC[url.path][1], extra, head=head)
        elif url.path == "/api/view":
            view = snapshots.view or Encoded.of(b'{"kind": "loading"}')
            self._send_encoded(view, "application/json", head)
        elif url.path == "/api/layout" and snapshots.layout is not None:
            self._send_encoded(snapshots.layout, "application/octet-stream", head)
        elif url.path == "/thumbnail.png" and snapshots.thumbnail:
            self._send(HTTPStatus.OK, snapshots.thumbnail, "image/png", head=head)
        elif url.path.startswith("/files/") and (name := unquote(url.path.removeprefix("/files/"))) in snapshots.files:
            self._send_file(snapshots.files[name], head)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", head=head)

    def _allowed(self, query: str) -> bool:
        """Loopback: the request must name a loopback host. Elsewhere: it must carry the token."""
        token = self.server.token
        if token is None:
            if is_loopback(request_host(self.headers.get("Host") or "")):
                return True
            self._send(HTTPStatus.FORBIDDEN, b"this dashboard answers only on its loopback address\n", "text/plain")
            return False
        given = parse_qs(query).get("token", [""])[0]
        if not given:
            cookie = SimpleCookie(self.headers.get("Cookie") or "")
            given = cookie[COOKIE].value if COOKIE in cookie else ""
        if hmac.compare_digest(given.encode(), token.encode()):
            return True
        self._send(
            HTTPStatus.UNAUTHORIZED,
            b"this dashboard needs its token: open the URL that rslp dashboard printed when it started\n",
            "text/plain",
        )
        return False

    def _send_encoded(self, body: Encoded, content_type: str, head: bool) -> None:
        if "gzip" in (self.headers.get("Accept-Encoding") or ""):
            self._send(HTTPStatus.OK, body.gzipped, content_type, {"Content-Encoding": "gzip"}, head=head)
        else:
            self._send(HTTPStatus.OK, body.body, content_type, head=head)

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        extra: dict[str, str] | None = None,
        head: bool = False,
    ) -> None:
        self.send_response(status)
        self._headers(content_type, len(body), extra)
        if not head:
            self.wfile.write(body)

    def _headers(self, content_type: str, length: int, extra: dict[str, str] | None = None) -> None:
        headers = {**SECURITY_HEADERS, "Content-Type": content_type, "Content-Length": str(length)}
        headers["Cache-Control"] = "no-store"
        for key, value in {**headers, **(extra or {})}.items():
            self.send_header(key, value)
        self.end_headers()

    def _send_file(self, path: Any, head: bool) -> None:
        """Stream one of the job's outputs (a name the server chose, never one from the request)."""
        size = path.stat().st_size
        self.send_response(HTTPStatus.OK)
        disposition = {"Content-Disposition": f'attachment; filename="{path.name}"'}
        is_image = path.suffix == ".png"
        self._headers("image/png" if is_image else "application/octet-stream", size, {} if is_image else disposition)
        if head:
            return
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                self.wfile.write(chunk)


def dashboard(
    job_root: str | None = None,
    root: str | None = None,
    port: int = 0,
    host: str = "127.0.0.1",
    interval: float = 5.0,
) -> None:
    """Serve a live, read-only page of one job (or a rolling root's periods) and print its URL.

    The page shows each step's tasks by state with its ETA, the partitions on a map,
    throughput, the workers from their heartbeats, failures and dead letters (with the
    command that replays them), and the outputs once the job is done. It reads what
    `rslp status` reads, in the background every INTERVAL seconds; it never changes a job.

    Args:
        job_root: the job root (local path or gs://...) that write-jobs created.
        root: a rolling root (rslp rolling): one row per period, with its drift.
        port: the port to listen on (0: a free one).
        host: the address to bind; anything but loopback needs the token printed at start.
        interval: seconds between reads of the job root.
    """
    snapshots = Snapshots(job_root=job_root, root=root, interval=interval)
    # A mistyped root fails here, in one line, rather than on a page that never fills.
    if job_root is not None:
        JobRoot(job_root).read_manifest()
    elif root is not None and not UPath(root).exists():
        raise FileNotFoundError(f"{root}: no such rolling root")
    token = None if is_loopback(host) else secrets.token_urlsafe(24)
    server = DashboardServer(snapshots, host, port, token)
    snapshots.start()
    print(f"rslp dashboard of {job_root or root}: {server.url}  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        snapshots.stop()
