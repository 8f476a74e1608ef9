"""rslp dashboard's server: read-only, loopback or token, answers from memory, serves only its own files."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rslp.dashboard.server import DashboardServer, is_loopback
from rslp.dashboard.snapshot import Snapshots
from tests.unit.test_status_report import make_job, mark


@pytest.fixture
def job(tmp_path: Path) -> Path:
    root = tmp_path / "job"
    make_job(root, 4)
    mark(root, "create_windows", "p00000", "running", "done")
    mark(root, "create_windows", "p00001", "running", "dead", error="RuntimeError: broke")
    return root


def serve(job: Path, host: str = "127.0.0.1", token: str | None = None) -> DashboardServer:
    snapshots = Snapshots(job_root=str(job))
    snapshots.refresh()
    server = DashboardServer(snapshots, host, 0, token)
    server.start()
    return server


@pytest.fixture
def server(job: Path) -> Iterator[DashboardServer]:
    server = serve(job)
    yield server
    server.close()


def request(
    server: DashboardServer, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request(method, path, headers=headers or {}, body=b"{}" if method in ("POST", "PUT", "PATCH") else None)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def markers(job: Path) -> list[str]:
    return sorted(str(p.relative_to(job)) for p in (job / "markers").rglob("*"))


def test_the_page_and_its_parts_come_from_package_data(server: DashboardServer) -> None:
    status, headers, page = request(server, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'<script src="app.js"' in page and b"://" not in page  # nothing fetched from elsewhere
    for path in ("/app.js", "/app.css"):
        status, _, body = request(server, path)
        assert status == 200 and b"://" not in body
    assert request(server, "/favicon.svg")[0] == 200


def test_every_method_but_get_and_head_is_refused_and_nothing_changes(server: DashboardServer, job: Path) -> None:
    before = markers(job)
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in ("/", "/api/view", "/files/prediction.tif"):
            status, headers, _ = request(server, path, method)
            assert (status, headers["allow"]) == (405, "GET, HEAD")
    assert request(server, "/api/view", "HEAD")[0] == 200
    assert markers(job) == before


def test_the_view_is_json_gzipped_when_asked_with_a_csp_that_allows_only_its_own_script(
    server: DashboardServer,
) -> None:
    status, headers, body = request(server, "/api/view", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    view = json.loads(gzip.decompress(body))
    assert view["job_id"] == "job-test" and view["dead"][0]["reason"] == "RuntimeError: broke"
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert headers["x-content-type-options"] == "nosniff"


def test_requests_are_answered_from_the_last_read_not_the_job_root(server: DashboardServer, job: Path) -> None:
    (job / "manifest.json").rename(job / "moved.json")  # a read now would fail
    status, _, body = request(server, "/api/view")
    assert status == 200 and json.loads(body)["job_id"] == "job-test" and "error" not in json.loads(body)
    assert request(server, "/api/layout")[2] == server.snapshots.layout.body  # type: ignore[union-attr]


def test_only_the_jobs_own_outputs_are_served(server: DashboardServer) -> None:
    escapes = ("/files/../manifest.json", "/files/%2e%2e%2fmanifest.json", "/files/manifest.json", "/../manifest.json")
    for path in escapes:
        assert request(server, path)[0] == 404


def test_on_loopback_a_request_naming_another_host_is_refused(server: DashboardServer) -> None:
    """A page elsewhere that rebinds its own name to 127.0.0.1 cannot read the dashboard."""
    assert request(server, "/api/view", headers={"Host": "attacker.example:80"})[0] == 403
    assert request(server, "/api/view", headers={"Host": f"localhost:{server.port}"})[0] == 200


def test_bound_elsewhere_it_needs_the_token_then_the_page_carries_it_in_a_cookie(job: Path) -> None:
    server = serve(job, host="0.0.0.0", token="s3cret-token")
    try:
        assert request(server, "/")[0] == 401
        assert request(server, "/api/view?token=wrong")[0] == 401
        status, headers, _ = request(server, "/?token=s3cret-token")
        assert status == 200
        cookie = headers["set-cookie"].split(";")[0]
        assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
        status, _, body = request(server, "/api/view", headers={"Cookie": cookie})
        assert status == 200 and b"s3cret-token" not in body
    finally:
        server.close()


def test_loopback_addresses_are_told_from_others() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.5", "::", "example.com"))


def test_cli_prints_the_url_with_a_token_when_bound_beyond_loopback(job: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rslp.cli", "dashboard", "--job-root", str(job), "--host", "0.0.0.0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"rslp dashboard of {job}: http://0.0.0.0:") and "?token=" in line
        url = line.split()[4]
        port, token = int(url.split(":")[2].split("/")[0]), url.split("?token=")[1]
        deadline = time.monotonic() + 30
        while True:  # the first read of the job root happens in the background
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", f"/api/view?token={token}")
            view = json.loads(conn.getresponse().read())
            if view["kind"] == "job" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert view["kind"] == "job"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/view")
        assert conn.getresponse().status == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_cli_with_a_missing_job_root_fails_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rslp.cli", "dashboard", "--job-root", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"rslp dashboard: error: {tmp_path}/nope/manifest.json: no job manifest (is this a job root?)"
    )
