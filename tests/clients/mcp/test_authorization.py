"""How an MCP client learns to authenticate, as the MCP specification's
authorization section asks: a request without a usable credential gets 401
with `WWW-Authenticate: Bearer resource_metadata="…"`, and that URL serves
the endpoint's OAuth 2.0 Protected Resource Metadata (RFC 9728), naming the
endpoint as the resource and the identity provider that issues session
tokens as its authorization server.
"""

import base64
import json

import httpx2
import pytest
from gateway import mcp_session, refused_over_http

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "curl-like", "version": "1"},
    },
}
ACCEPT = "application/json, text/event-stream"


def post(url, token=None):
    headers = {"Accept": ACCEPT}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx2.post(url, json=INITIALIZE, headers=headers, timeout=10)


def issuer_of(session_token):
    """The `iss` claim of a session JWT (its payload, unverified)."""
    payload = session_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["iss"]


def metadata_url(server, endpoint):
    return f"{server.base_url}/.well-known/oauth-protected-resource{endpoint}"


@pytest.mark.parametrize("endpoint", ["/mcp", "/mcp/run"])
def test_no_credential_gets_401_pointing_at_the_metadata(server, team, endpoint):
    refused = post(f"{server.base_url}{endpoint}")
    assert refused.status_code == 401, refused.text
    assert refused.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{metadata_url(server, endpoint)}"'
    )
    assert "Authorization: Bearer" in refused.json()["message"]

    metadata = httpx2.get(refused.headers["www-authenticate"].split('"')[1], timeout=10)
    assert metadata.status_code == 200
    assert metadata.headers["content-type"].startswith("application/json")
    document = metadata.json()
    assert document["resource"] == f"{server.base_url}{endpoint}"
    assert document["authorization_servers"] == [issuer_of(team.member_token)]
    assert document["bearer_methods_supported"] == ["header"]

    # The gateway's own document names the gateway.
    whole = httpx2.get(metadata_url(server, ""), timeout=10).json()
    assert whole["resource"] == server.base_url


@pytest.mark.anyio
async def test_the_sdk_cannot_open_a_session_without_a_credential(server):
    with refused_over_http():
        async with mcp_session(server.mcp_url) as client:
            await client.list_tools()


def test_a_refused_credential_is_an_invalid_token(server, team):
    for endpoint, token, why in [
        ("/mcp", "ask_not-a-key", ""),
        ("/mcp", "asr_not-a-run-token", "a run token is for /mcp/run"),
        ("/mcp/run", team.member_token, "/mcp/run takes the run token"),
    ]:
        refused = post(f"{server.base_url}{endpoint}", token)
        assert refused.status_code == 401, (endpoint, refused.text)
        challenge = refused.headers["www-authenticate"]
        assert challenge.startswith('Bearer error="invalid_token"'), challenge
        assert f'resource_metadata="{metadata_url(server, endpoint)}"' in challenge
        assert why in refused.json()["message"], refused.json()


def test_a_refused_request_leaves_its_connection_usable(server):
    # An MCP client sends its next message on the same connection; the
    # Python SDK does when it falls back from 2026-07-28's discovery to the
    # initialize handshake. Each must get its answer, not a disconnect.
    refusals = []
    for _ in range(50):
        with httpx2.Client(headers={"Authorization": "Bearer asr_ended", "Accept": ACCEPT}) as http:
            for _ in range(2):
                refusals.append(
                    http.post(f"{server.base_url}/mcp/run", json=INITIALIZE, timeout=10).status_code
                )
    assert refusals == [401] * 100
