"""A real `agentshare serve`, reached two ways: as MCP clients reach it, with
the official MCP Python SDK on `/mcp` and `/mcp/run`, and over HTTP/JSON for
what the stories need set up (orgs, agents, shares, grants) and checked (the
workspace store), with httpx2, the SDK's own HTTP client.

Setup goes over HTTP/JSON rather than gRPC: no generated code for it, and
the routes are the ones the gateway transcodes from the `google.api.http`
annotations in proto/. The only generated code of the suite is the agent
runtime's (runtime.py), which agentshare calls over gRPC.
"""

import struct
from contextlib import asynccontextmanager

import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from serve import CALL_TIMEOUT_SECS, ServeProcess

# The SDK's own advice for MCP's HTTP client: a long read timeout, as a
# server holds a response stream open while it has nothing to say.
MCP_TIMEOUT = httpx2.Timeout(CALL_TIMEOUT_SECS, read=300.0)
GRANT_HEADER = "x-agentshare-grant-token"


def health_check(base_url, service):
    """grpc.health.v1.Health/Check over gRPC-Web, which the same port
    serves: a five-byte frame header and the protobuf HealthCheckRequest
    (field 1, the service name), answered by a data frame holding
    HealthCheckResponse (field 1, the status; 1 is SERVING). Returns the
    status number, or None."""
    name = service.encode()
    request = b"\x0a" + bytes([len(name)]) + name if name else b""
    answer = httpx2.post(
        f"{base_url}/grpc.health.v1.Health/Check",
        content=b"\x00" + struct.pack(">I", len(request)) + request,
        headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
        timeout=1,
    )
    body = answer.content
    if answer.status_code != 200 or len(body) < 5 or body[0] != 0:
        return None
    (length,) = struct.unpack(">I", body[1:5])
    message = body[5 : 5 + length]
    if len(message) == 2 and message[0] == 0x08:
        return message[1]
    return 0 if length == 0 else None


class Server(ServeProcess):
    """`agentshare serve` (see tests/clients/support/serve.py); `env` adds
    settings, such as AGENTSHARE_RUNTIME_URL."""

    def __init__(self, binary, env=None, name="mcp"):
        super().__init__(binary, name=name, env=env)

    def connect(self):
        self.base_url = f"http://{self.address}"
        self.mcp_url = f"{self.base_url}/mcp"
        self.run_url = f"{self.base_url}/mcp/run"

    def serving(self, service):
        try:
            return health_check(self.base_url, service) == 1
        except httpx2.HTTPError:
            return False

    def api(self, token=None, grant_token=None):
        return Api(self.base_url, token=token, grant_token=grant_token)


class Api:
    """One caller on the HTTP/JSON routes, as `Authorization: Bearer …`
    and/or the share-token header. Each method returns the parsed answer
    of a call that must succeed."""

    def __init__(self, base_url, token=None, grant_token=None):
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if grant_token is not None:
            headers[GRANT_HEADER] = grant_token
        self.http = httpx2.Client(base_url=base_url, headers=headers, timeout=CALL_TIMEOUT_SECS)

    def request(self, method, path, body=None, params=None):
        return self.http.request(method, path, json=body, params=params)

    def get(self, path, **params):
        return ok(self.request("GET", path, params=params))

    def post(self, path, body=None):
        return ok(self.request("POST", path, body={} if body is None else body))

    def delete(self, path):
        return ok(self.request("DELETE", path))


def describe(response):
    return (
        f"{response.request.method} {response.request.url.path} -> "
        f"{response.status_code}: {response.text[:2000]}"
    )


def ok(response):
    assert response.status_code == 200, describe(response)
    return response.json()


@asynccontextmanager
async def mcp_session(url, token=None, grant_token=None, mode="auto", message_handler=None):
    """An MCP session of the SDK's `Client` on `url`, with `token` as the
    bearer and `grant_token` in the share-token header, as a configured MCP
    client sends them. `mode` "auto" negotiates the newest protocol
    (2026-07-28); "legacy" forces the initialize handshake of earlier
    versions."""
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if grant_token is not None:
        headers[GRANT_HEADER] = grant_token
    async with httpx2.AsyncClient(headers=headers, timeout=MCP_TIMEOUT) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(
            transport,
            mode=mode,
            message_handler=message_handler,
            read_timeout_seconds=CALL_TIMEOUT_SECS,
        ) as client:
            yield client



# What the SDK says when the endpoint answers with an HTTP error (a 401)
# rather than MCP.
HTTP_ERROR = "Server returned an error response"


def refused_over_http():
    """Expects a session that cannot open for an HTTP error: the SDK's
    MCPError (HTTP_ERROR) inside the exception groups of its task groups.
    (A request of a session that is open raises the MCPError itself.)"""
    return pytest.RaisesGroup(
        pytest.RaisesExc(MCPError, match=HTTP_ERROR), flatten_subgroups=True
    )
