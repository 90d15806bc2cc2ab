"""`/mcp/run` with the official MCP Python SDK, as an agent runtime uses it:
agentshare calls the test's own runtime (runtime.py) over gRPC, and the
runtime, during the run, opens an MCP session at `RunRequest.mcp_url` with
`RunRequest.run_token` and uses the workspace tools. The person who invoked
the agent reads the answer, and finds what the run wrote in the agent's
store; once the run is over, its token opens nothing.

This needs a server whose runtime is the test's, so it starts one of its
own; against a running topology (AGENTSHARE_GATEWAY) it is skipped, since
that gateway's runtime is set when the topology starts.
"""

import httpx2
import pytest
from conftest import deployed_agent, new_team
from gateway import mcp_session, refused_over_http
from runtime import NOTE_KEY, McpRuntime
from serve import EXTERNAL_GATEWAY

WORKSPACE_TOOLS = {
    "workspace_list",
    "workspace_read",
    "workspace_write",
    "workspace_delete",
    "workspace_publish",
}


@pytest.fixture(scope="module")
def runtime():
    if EXTERNAL_GATEWAY:
        pytest.skip("the running gateway calls its own runtime; this test needs its runtime")
    running = McpRuntime()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def run_server(runtime, start_server):
    return start_server({"AGENTSHARE_RUNTIME_URL": runtime.url}, name="mcp-runtime")


@pytest.mark.anyio
async def test_a_runtime_uses_the_workspace_tools_over_mcp_with_its_run_token(
    runtime, run_server
):
    team = new_team(run_server)
    agent = deployed_agent(team.owner, "Note taker")

    answer = team.owner.post(
        f"/api/v1/agents/{agent['id']}:invoke", {"input": "visit Lyon on Tuesday"}
    )
    seen = runtime.runs[answer["invocationId"]]
    assert answer["outputText"] == "read back: visit Lyon on Tuesday", (answer, seen)

    # The runtime found the five tools the RunRequest lists, with their
    # schemas, and the newest protocol.
    assert seen["mcp_url"] == f"{run_server.base_url}/mcp/run"
    assert seen["protocol_version"] == "2026-07-28"
    assert set(seen["tools"]) == WORKSPACE_TOOLS == set(seen["workspace_tools"])
    assert seen["tools"]["workspace_write"]["required"] == ["key", "value"]
    # Its structured results are the store's answers, with proto field names.
    assert seen["written"]["item"]["key"] == NOTE_KEY
    assert seen["written"]["item"]["revision"] == "1"
    # Naming another agent is refused as a tool error.
    other = seen["other_agent"]
    assert other["is_error"] is True, other
    assert other["text"] == "PERMISSION_DENIED: this run token is for another agent", other
    assert other["structured"]["status"] == "PERMISSION_DENIED", other

    # What the run wrote is in the agent's store, for its owner to read.
    item = team.owner.get(f"/api/v1/agents/{agent['id']}/store:read", key=NOTE_KEY)["item"]
    assert item["value"] == "visit Lyon on Tuesday"
    assert item["createdBy"] == agent["id"]

    # The run is over: its token opens no MCP session any more ...
    token = seen["run_token"]
    assert token.startswith("asr_")
    with refused_over_http():
        async with mcp_session(run_server.run_url, token=token) as client:
            await client.list_tools()
    # ... because the endpoint answers 401 and says why.
    refused = httpx2.post(
        run_server.run_url,
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/json, text/event-stream",
        },
    )
    assert refused.status_code == 401, refused.text
    challenge = refused.headers["www-authenticate"]
    assert challenge.startswith("Bearer error=\"invalid_token\""), challenge
    assert (
        f'resource_metadata="{run_server.base_url}/.well-known/oauth-protected-resource/mcp/run"'
        in challenge
    )
    assert refused.json()["code"] == 16
