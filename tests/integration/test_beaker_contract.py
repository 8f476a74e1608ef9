"""The real beaker-py 2.8 client, driven by rslp, against a fake Beaker on 127.0.0.1.

beaker-py creates experiments over HTTP (``POST /api/v3/workspaces/ID/experiments``)
and does everything else over gRPC. This file serves both from a small in-memory
fake, so the calls rslp makes (argument names, name resolution, paging, the
latest-job lookup, cancel) and the errors it explains (bad token, unknown workspace
or cluster, unreachable server) are checked against the library itself, not a mock
of it. The only liberty: the client's gRPC channel is plaintext instead of TLS.
Everything listens on loopback and every call is bounded by the client's timeout.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from beaker import Beaker, beaker_pb2_grpc
from beaker import beaker_pb2 as pb2
from beaker.config import Config

from rslp.launch.beaker import BAD_TOKEN, BeakerFleetClient, launch_fleet
from rslp.launch.config import LaunchConfig
from rslp.launch.fleet import FleetError, FleetTimeoutError, fleet_status, stop_fleet

pytestmark = pytest.mark.timeout(60)

TOKEN = "contract-test-token"
WORKSPACE_ID = "01WORKSPACE"


@dataclass
class FakeBeaker:
    """Beaker's state: one workspace, one cluster, the experiments created so far."""

    experiments: dict[str, pb2.Workload] = field(default_factory=dict)
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, name: str, spec: dict[str, Any]) -> str:
        with self.lock:
            n = len(self.experiments)
            workload = pb2.Workload(
                experiment=pb2.Experiment(
                    id=f"01EXP{n}", name=name, workspace_id=WORKSPACE_ID, tasks=[pb2.Task(id=f"01TASK{n}")]
                ),
                status=pb2.WorkloadStatus.STATUS_QUEUED,
            )
            self.experiments[workload.experiment.id] = workload
            self.specs[name] = spec
            return workload.experiment.id


class Servicer(beaker_pb2_grpc.BeakerServicer):
    """The handful of RPCs rslp's fleet calls reach, with Beaker's auth and NOT_FOUND behaviour."""

    def __init__(self, state: FakeBeaker) -> None:
        self.state = state
        self.pages: dict[str, tuple[Any, int]] = {}

    def _auth(self, context: grpc.ServicerContext) -> None:
        if dict(context.invocation_metadata()).get("authorization") != f"bearer {TOKEN}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid authorization token")

    def ResolveWorkspaceName(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._auth(context)
        if (request.owner_name, request.workspace_name) != ("ai2", "fleets"):
            context.abort(grpc.StatusCode.NOT_FOUND, "workspace not found")
        return pb2.ResolveWorkspaceNameResponse(workspace_id=WORKSPACE_ID)

    def GetWorkspace(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._auth(context)
        return pb2.GetWorkspaceResponse(workspace=pb2.Workspace(id=request.workspace_id, name="fleets"))

    def ResolveClusterName(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._auth(context)
        if (request.owner_name, request.cluster_name) != ("ai2", "jupiter"):
            context.abort(grpc.StatusCode.NOT_FOUND, "cluster not found")
        return pb2.ResolveClusterNameResponse(cluster_id="01CLUSTER")

    def GetCluster(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._auth(context)
        return pb2.GetClusterResponse(cluster=pb2.Cluster(id=request.cluster_id, name="jupiter"))

    def GetWorkload(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._auth(context)
        if request.workload_id not in self.state.experiments:
            context.abort(grpc.StatusCode.NOT_FOUND, "workload not found")
        return pb2.GetWorkloadResponse(workload=self.state.experiments[request.workload_id])

    def ListWorkloads(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._auth(context)
        # Beaker's page token stands for the whole query: the request carries either
        # options or a token (a oneof), never both. Serve pages of two so paging is exercised.
        if request.HasField("next_page_token"):
            opts, start = self.pages[request.next_page_token]
        else:
            opts, start = request.options, 0
        assert opts.workspace_id == WORKSPACE_ID
        found = [
            w
            for w in self.state.experiments.values()
            if opts.name_or_description_substring in w.experiment.name
            and not (opts.HasField("job_finalized") and w.experiment.id in self.state.cancelled)
        ]
        token = ""
        if start + 2 < len(found):
            token = f"page-{len(self.pages)}"
            self.pages[token] = (opts, start + 2)
        return pb2.ListWorkloadsResponse(workloads=found[start : start + 2], next_page_token=token)

    def ResolveOrganizationName(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._auth(context)
        return pb2.ResolveOrganizationNameResponse(organization_id="01ORG")

    def ListJobs(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._auth(context)
        task_id = request.options.task_id
        if task_id.endswith("0"):  # the first worker of each launch has a running job
            job = pb2.Job(id=f"01JOB-{task_id}", status=pb2.JobStatus(status=pb2.WorkloadStatus.STATUS_RUNNING))
            return pb2.ListJobsResponse(jobs=[job])
        return pb2.ListJobsResponse(jobs=[])

    def CancelWorkloads(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._auth(context)
        self.state.cancelled.extend(request.workload_ids)
        return pb2.CancelWorkloadsResponse(workload_ids=list(request.workload_ids))


def http_handler(state: FakeBeaker) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._reply(401, {"message": "invalid token"})
            path, _, query = self.path.partition("?")
            if path != f"/api/v3/workspaces/{WORKSPACE_ID}/experiments":
                return self._reply(404, {"message": f"no route {path}"})
            name = dict(p.split("=", 1) for p in query.split("&"))["name"]
            spec = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self._reply(200, {"id": state.create(name, spec)})

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class LoopbackBeaker(Beaker):
    """beaker.Beaker unchanged except for a plaintext channel to the fake."""

    @property
    def service(self) -> beaker_pb2_grpc.BeakerStub:
        if self._service is None:
            self._channel = grpc.insecure_channel(self.config.rpc_address)
            self._service = beaker_pb2_grpc.BeakerStub(self._channel)
        return self._service


@dataclass
class Server:
    state: FakeBeaker
    grpc_address: str
    http_address: str
    clients: list[BeakerFleetClient] = field(default_factory=list)

    def client(self, token: str = TOKEN, timeout: float = 10, rpc_address: str | None = None) -> BeakerFleetClient:
        config = Config(
            user_token=token,
            agent_address=f"http://{self.http_address}",
            rpc_address=rpc_address or self.grpc_address,
        )
        client = BeakerFleetClient(LoopbackBeaker(config, check_for_upgrades=False), timeout=timeout)
        self.clients.append(client)
        return client


@pytest.fixture
def server() -> Iterator[Server]:
    state = FakeBeaker()
    rpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    beaker_pb2_grpc.add_BeakerServicer_to_server(Servicer(state), rpc)
    port = rpc.add_insecure_port("127.0.0.1:0")
    rpc.start()
    http = ThreadingHTTPServer(("127.0.0.1", 0), http_handler(state))
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    fake = Server(state, f"127.0.0.1:{port}", f"127.0.0.1:{http.server_address[1]}")
    try:
        yield fake
    finally:
        for client in fake.clients:
            client.beaker.close()
        http.shutdown()
        http.server_close()
        rpc.stop(grace=None)


def config(**overrides: Any) -> LaunchConfig:
    fields: dict[str, Any] = {
        "fleet": "demo",
        "image": "someone/rslp-worker",
        "workspace": "ai2/fleets",
        "clusters": ["ai2/jupiter"],
        "timeout": "24h",
        "worker": {"queue": "pubsub://p", "subscription": "s"},
    }
    fields.update(overrides)
    return LaunchConfig.model_validate(fields)


def test_launch_status_stop_round_trip(server: Server) -> None:
    client = server.client()
    names = launch_fleet(client, config(), 3, launch_id="aaa")
    other = launch_fleet(client, config(fleet="demo-b"), 1, launch_id="aaa")
    assert names == ["demo-aaa-w0", "demo-aaa-w1", "demo-aaa-w2"]
    spec = server.state.specs["demo-aaa-w1"]
    assert spec["tasks"][0]["timeout"] == 24 * 3600 * 1_000_000_000
    assert spec["tasks"][0]["context"] == {"priority": "low", "minRuntime": 0, "autoResume": True}

    workers = fleet_status(client, "ai2/fleets", "demo")
    assert [w.name for w in workers] == names  # "demo-b-aaa-w0" matched the substring, not the fleet
    assert [(w.status, w.job_id is not None) for w in workers] == [
        ("running", True),
        ("queued", False),
        ("queued", False),
    ]

    assert stop_fleet(client, "ai2/fleets", "demo") == names
    stopped_ids = {server.state.experiments[i].experiment.name for i in server.state.cancelled}
    assert stopped_ids == set(names)
    assert other[0] not in stopped_ids


def test_bad_token_is_explained(server: Server) -> None:
    with pytest.raises(FleetError) as info:
        fleet_status(server.client(token="wrong-token"), "ai2/fleets", "demo")
    assert str(info.value) == BAD_TOKEN
    assert "wrong-token" not in str(info.value)


def test_unknown_workspace_and_cluster_are_named(server: Server) -> None:
    with pytest.raises(FleetError, match="workspace not found: ai2/nope"):
        launch_fleet(server.client(), config(workspace="ai2/nope"), 1)
    with pytest.raises(FleetError, match="cluster not found: ai2/typo"):
        launch_fleet(server.client(), config(clusters=["ai2/typo"]), 1)
    assert server.state.experiments == {}


def test_unreachable_beaker_times_out_instead_of_retrying_forever(server: Server) -> None:
    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    client = server.client(timeout=2, rpc_address=closed)
    with pytest.raises(FleetTimeoutError, match="did not answer within 2s"):
        fleet_status(client, "ai2/fleets", "demo")
