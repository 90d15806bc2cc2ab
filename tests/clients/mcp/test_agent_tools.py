"""`/mcp` with the official MCP Python SDK: the agents a person may run, as
tools. A member of the org sees the agents shared with their workspace and
the org default agent, and calling one runs it as they would over the API:
the text content is the agent's answer, the structured content is the
InvokeResponse with proto field names. A share token holder sees the
grant's one agent. Both protocol generations the SDK speaks are used: "auto"
negotiates 2026-07-28, "legacy" the initialize handshake of earlier ones.

The server runs the built-in echo runtime, which answers "echo: <input>".
"""

import pytest
from conftest import deployed_agent, new_team
from gateway import mcp_session

MODES = ["auto", "legacy"]


def text_of(result):
    return "".join(getattr(block, "text", "") for block in result.content)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_member_runs_the_agents_shared_with_them(team, mode):
    deployed_agent(team.owner, "Field Notes", "Keeps the team's notes from site visits.")
    # The owner's agent that is not shared is no tool of the member's.
    deployed_agent(team.owner, "Owner's scratchpad", share=False)
    default_name = team.default_agent["draft"]["name"]

    async with mcp_session(team.server.mcp_url, token=team.member_token, mode=mode) as client:
        if mode == "auto":
            assert client.protocol_version == "2026-07-28"
        assert client.server_capabilities.tools.list_changed is True

        tools = {tool.title: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == {"Field Notes", default_name}
        notes = tools["Field Notes"]
        assert notes.name == "field_notes"
        assert "Keeps the team's notes from site visits" in notes.description
        assert notes.input_schema["required"] == ["input"]
        assert set(notes.input_schema["properties"]) == {"input", "session_id"}

        answer = await client.call_tool("field_notes", {"input": "where did we leave off?"})
        assert not answer.is_error, text_of(answer)
        assert text_of(answer).startswith("echo: where did we leave off?"), text_of(answer)
        invoked = answer.structured_content
        assert invoked["output_text"] == text_of(answer)
        assert invoked["billed_to"] == "BILLED_PARTY_CALLER"
        assert invoked["invocation_id"]

        # Passing the session back continues the conversation.
        again = await client.call_tool(
            "field_notes", {"input": "and after that?", "session_id": invoked["session_id"]}
        )
        assert not again.is_error, text_of(again)
        assert again.structured_content["session_id"] == invoked["session_id"]
        transcript = team.member.get(f"/api/v1/sessions/{invoked['session_id']}")
        assert [m["content"] for m in transcript["messages"]] == [
            "where did we leave off?",
            text_of(answer),
            "and after that?",
            text_of(again),
        ]

        default = await client.call_tool(tools[default_name].name, {"input": "hello"})
        assert not default.is_error, text_of(default)
        assert text_of(default).startswith("echo: hello"), text_of(default)

        # A tool that is not the member's is a tool error the model can read,
        # with google.rpc.Status for a program.
        missing = await client.call_tool("owner_s_scratchpad", {"input": "peek"})
        assert missing.is_error
        assert text_of(missing).startswith("NOT_FOUND: "), text_of(missing)
        assert missing.structured_content["status"] == "NOT_FOUND"
        assert missing.structured_content["code"] == 5


@pytest.mark.anyio
async def test_an_api_key_lists_and_runs_the_same_tools(team):
    deployed_agent(team.owner, "Field Notes")
    key = team.member.post("/api/v1/apiKeys", {"label": "my MCP client"})["secret"]
    assert key.startswith("ask_")
    async with mcp_session(team.server.mcp_url, token=key) as client:
        titles = {tool.title for tool in (await client.list_tools()).tools}
        assert titles == {"Field Notes", team.default_agent["draft"]["name"]}
        answer = await client.call_tool("field_notes", {"input": "from my editor"})
        assert not answer.is_error, text_of(answer)
        assert text_of(answer).startswith("echo: from my editor")


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_delegate_share_token_is_the_one_tool_of_its_agent(team, mode):
    notes = deployed_agent(team.owner, "Field Notes")
    deployed_agent(team.owner, "Another shared agent")
    granted = team.owner.post(
        f"/api/v1/agents/{notes['id']}/grants",
        {"kind": "GRANT_KIND_DELEGATE", "label": "support bot"},
    )
    assert granted["token"].startswith("asg_")

    # A client configured with one bearer token sends the share token there.
    async with mcp_session(team.server.mcp_url, token=granted["token"], mode=mode) as client:
        tools = (await client.list_tools()).tools
        assert [(tool.name, tool.title) for tool in tools] == [("field_notes", "Field Notes")]
        answer = await client.call_tool("field_notes", {"input": "where are my orders?"})
        assert not answer.is_error, text_of(answer)
        assert text_of(answer).startswith("echo: where are my orders?"), text_of(answer)
        # A DELEGATE run is the owner's, on the owner's bill.
        assert answer.structured_content["billed_to"] == "BILLED_PARTY_AGENT_OWNER"

        other = await client.call_tool("another_shared_agent", {"input": "hi"})
        assert other.is_error
        assert other.structured_content["status"] == "NOT_FOUND", other.structured_content


@pytest.mark.anyio
async def test_an_invoke_share_token_goes_with_the_holders_own_session(server):
    # The holder is someone outside the owner's org, running the agent with
    # their own session and the share token in its header.
    team = new_team(server, "Initech")
    outsider = new_team(server, "Outside")
    notes = deployed_agent(team.owner, "Field Notes")
    granted = team.owner.post(
        f"/api/v1/agents/{notes['id']}/grants",
        {"kind": "GRANT_KIND_INVOKE", "label": "partner"},
    )
    async with mcp_session(
        server.mcp_url, token=outsider.member_token, grant_token=granted["token"]
    ) as client:
        tools = (await client.list_tools()).tools
        assert [tool.name for tool in tools] == ["field_notes"]
        answer = await client.call_tool("field_notes", {"input": "partner question"})
        assert not answer.is_error, text_of(answer)
        assert text_of(answer).startswith("echo: partner question")
        # An INVOKE run is the holder's, on the holder's bill.
        assert answer.structured_content["billed_to"] == "BILLED_PARTY_CALLER"
