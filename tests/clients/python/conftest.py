"""A real `agentshare serve` for the suite (started by
tests/clients/support/serve.py), and callers that reach it over gRPC.

The client code is generated from proto/ by tests/clients/run (grpcio-tools)
into a folder on PYTHONPATH; nothing generated is committed. The binary comes
from AGENTSHARE_BIN.
"""

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from serve import CALL_TIMEOUT_SECS, ServeProcess, agentshare_binary

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

# The story's steps build on each other (see tests/clients/support).
pytest_plugins = ["story_steps"]


class Server(ServeProcess):
    """`agentshare serve` (see tests/clients/support/serve.py), reached over
    one gRPC channel."""

    def __init__(self, binary):
        self.channel = None
        super().__init__(binary, name="python")

    def connect(self):
        self.channel = grpc.insecure_channel(self.address)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    def serving(self, service):
        try:
            status = self._health.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=1
            ).status
        except grpc.RpcError:
            return False
        return status == health_pb2.HealthCheckResponse.SERVING

    def caller(self, token=None, grant_token=None):
        return Caller(self.channel, token=token, grant_token=grant_token)

    def stop(self):
        if self.channel is not None:
            self.channel.close()
        super().stop()


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
    running = Server(agentshare_binary())
    yield running
    running.stop()
