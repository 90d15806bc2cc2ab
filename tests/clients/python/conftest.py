"""A real `agentshare serve` for the suite, and callers that reach it.

The client code is generated from proto/ by tests/clients/run (grpcio-tools)
into a folder on PYTHONPATH; nothing generated is committed. The binary comes
from AGENTSHARE_BIN.
"""

import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

try:
    from agentshare.gateway.v1 import invoke_pb2_grpc
    from agentshare.registry.v1 import registry_pb2_grpc
    from agentshare.scheduler.v1 import automations_pb2_grpc
    from agentshare.sharing.v1 import (
        access_pb2_grpc,
        connections_pb2_grpc,
        sharing_pb2_grpc,
        tenancy_pb2_grpc,
    )
    from agentshare.store.v1 import (
        sessions_pb2_grpc,
        usage_pb2_grpc,
        workspace_store_pb2_grpc,
    )
except ImportError as e:  # pragma: no cover - a setup mistake, said plainly
    raise ImportError(
        f"{e}: generate the client first; run the suite with `tests/clients/run python`"
    ) from e

SERVING_LINE = re.compile(r"agentshare is serving on (\S+:\d+) \(data dir ")
START_WITHIN_SECS = 30
CALL_TIMEOUT_SECS = 15

# Every public service the story calls; the gateway reports each SERVING
# once its backend does.
SERVICES = [
    "agentshare.sharing.v1.TenancyService",
    "agentshare.sharing.v1.SharingService",
    "agentshare.sharing.v1.ConnectionsService",
    "agentshare.sharing.v1.AccessService",
    "agentshare.registry.v1.AgentRegistryService",
    "agentshare.store.v1.WorkspaceStoreService",
    "agentshare.store.v1.SessionsService",
    "agentshare.store.v1.UsageService",
    "agentshare.scheduler.v1.AutomationsService",
    "agentshare.gateway.v1.InvokeService",
]


class Server:
    """`agentshare serve` on a fresh data dir and a port the OS picks."""

    def __init__(self, binary):
        self.binary = binary
        self.data_dir = tempfile.mkdtemp(prefix="agentshare-python-")
        self.lines = []
        env = dict(os.environ, AGENTSHARE_SHUTDOWN_DELAY_MILLIS="0")
        self.process = subprocess.Popen(
            [binary, "serve", "--data-dir", self.data_dir, "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._lines = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()
        self.channel = None
        try:
            self.address = self._address()
            self.channel = grpc.insecure_channel(self.address)
            self._wait_serving()
        except BaseException:
            self.stop()
            raise

    def _drain(self):
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))
            self._lines.put(line)
        self._lines.put(None)

    def _address(self):
        deadline = time.monotonic() + START_WITHIN_SECS
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(
                    f"agentshare serve exited with {self.process.wait()} before serving:\n"
                    + self.log()
                )
            match = SERVING_LINE.search(line)
            if match:
                return match.group(1)
        raise AssertionError(f"no serving line within {START_WITHIN_SECS} s:\n" + self.log())

    def _wait_serving(self):
        health = health_pb2_grpc.HealthStub(self.channel)
        deadline = time.monotonic() + START_WITHIN_SECS
        for service in [""] + SERVICES:
            while True:
                try:
                    status = health.Check(
                        health_pb2.HealthCheckRequest(service=service), timeout=1
                    ).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"{service or 'the server'} not SERVING:\n" + self.log())
                time.sleep(0.02)

    def token(self, user, email, step_up=False):
        """A session JWT minted by `agentshare token` for this data dir."""
        args = [self.binary, "token", "--data-dir", self.data_dir, "--user", user, "--email", email]
        if step_up:
            args.append("--step-up")
        return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()

    def caller(self, token=None, grant_token=None):
        return Caller(self.channel, token=token, grant_token=grant_token)

    def log(self):
        return "\n".join(self.lines[-200:])

    def stop(self):
        if self.channel is not None:
            self.channel.close()
        self.process.kill()
        self.process.wait(timeout=10)
        shutil.rmtree(self.data_dir, ignore_errors=True)


class Stub:
    """A generated stub whose calls all carry one caller's metadata."""

    def __init__(self, stub, metadata):
        self._stub = stub
        self._metadata = metadata

    def __getattr__(self, name):
        method = getattr(self._stub, name)

        def call(request):
            return method(request, metadata=self._metadata, timeout=CALL_TIMEOUT_SECS)

        return call


class Caller:
    """One caller's view of the gateway: a session token, a share token, or
    both, sent as `authorization: Bearer …` and `x-agentshare-grant-token`."""

    def __init__(self, channel, token=None, grant_token=None):
        metadata = []
        if token is not None:
            metadata.append(("authorization", f"Bearer {token}"))
        if grant_token is not None:
            metadata.append(("x-agentshare-grant-token", grant_token))
        stub = lambda cls: Stub(cls(channel), tuple(metadata))  # noqa: E731
        self.tenancy = stub(tenancy_pb2_grpc.TenancyServiceStub)
        self.sharing = stub(sharing_pb2_grpc.SharingServiceStub)
        self.connections = stub(connections_pb2_grpc.ConnectionsServiceStub)
        self.access = stub(access_pb2_grpc.AccessServiceStub)
        self.registry = stub(registry_pb2_grpc.AgentRegistryServiceStub)
        self.store = stub(workspace_store_pb2_grpc.WorkspaceStoreServiceStub)
        self.sessions = stub(sessions_pb2_grpc.SessionsServiceStub)
        self.usage = stub(usage_pb2_grpc.UsageServiceStub)
        self.automations = stub(automations_pb2_grpc.AutomationsServiceStub)
        self.invoke = stub(invoke_pb2_grpc.InvokeServiceStub)


def fails(call, code, *fragments):
    """Makes a call that must fail with `code` and a message holding every
    fragment; returns the error."""
    with pytest.raises(grpc.RpcError) as raised:
        call()
    error = raised.value
    assert error.code() == code, f"{error.code()}: {error.details()}"
    for fragment in fragments:
        assert fragment in error.details(), error.details()
    return error


@pytest.fixture(scope="session")
def server():
    binary = os.environ.get("AGENTSHARE_BIN")
    assert binary, "set AGENTSHARE_BIN to the agentshare binary (tests/clients/run does)"
    running = Server(binary)
    yield running
    running.stop()


# The story's steps build on each other: once one fails, the later ones are
# reported as expected failures of that step rather than as noise.
def pytest_runtest_makereport(item, call):
    if "incremental" in item.keywords and call.excinfo is not None:
        item.parent._failed_step = item


def pytest_runtest_setup(item):
    if "incremental" in item.keywords:
        failed = getattr(item.parent, "_failed_step", None)
        if failed is not None:
            pytest.xfail(f"an earlier step failed ({failed.name})")


def pytest_configure(config):
    config.addinivalue_line("markers", "incremental: steps that build on each other")
