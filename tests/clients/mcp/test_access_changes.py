"""Access that ends takes the tool away at once, and a session that listens
hears `notifications/tools/list_changed`: on 2026-07-28 through
`subscriptions/listen` (the SDK's `Client.listen`), on earlier versions on
the session's own stream (the SDK's message handler). After it, the list
lacks the tool and calling it fails: a tool error NOT_FOUND for a member,
while a revoked share token is refused before MCP with a 401.

Each session lists its tools again once it listens, as the SDK advises (no
replay: a change is announced against the list the server read when the
listening began), and only then does the owner change access.
"""

import anyio
import mcp.types as types
import pytest
from conftest import deployed_agent
from gateway import HTTP_ERROR, mcp_session
from mcp import MCPError
from mcp.client.subscriptions import ToolsListChanged
from serve import CALL_TIMEOUT_SECS


def names(listed):
    return {tool.name for tool in listed.tools}


def text_of(result):
    return "".join(getattr(block, "text", "") for block in result.content)


async def in_thread(call, *args):
    """A blocking HTTP/JSON call of the owner's, off the event loop, so the
    session's streams keep flowing meanwhile."""
    return await anyio.to_thread.run_sync(call, *args)


@pytest.mark.anyio
async def test_a_listening_member_hears_the_unshare_and_loses_the_tool(team):
    notes = deployed_agent(team.owner, "Field Notes")
    async with mcp_session(team.server.mcp_url, token=team.member_token) as client:
        assert "field_notes" in names(await client.list_tools())
        async with client.listen(tools_list_changed=True) as changes:
            assert changes.honored.tools_list_changed is True
            assert "field_notes" in names(await client.list_tools())

            await in_thread(team.owner.post, f"/api/v1/agents/{notes['id']}:unshare")
            with anyio.fail_after(CALL_TIMEOUT_SECS):
                event = await changes.__anext__()
            assert isinstance(event, ToolsListChanged), event

        listed = names(await client.list_tools())
        assert "field_notes" not in listed
        assert listed, "the org default agent is still theirs"
        refused = await client.call_tool("field_notes", {"input": "still there?"})
        assert refused.is_error
        assert text_of(refused).startswith("NOT_FOUND: "), text_of(refused)
        assert refused.structured_content["status"] == "NOT_FOUND"


@pytest.mark.anyio
async def test_a_legacy_session_hears_the_delete_on_its_stream(team):
    notes = deployed_agent(team.owner, "Field Notes")
    heard = anyio.Event()

    async def on_message(message):
        if isinstance(message, types.ToolListChangedNotification):
            heard.set()

    async with mcp_session(
        team.server.mcp_url, token=team.member_token, mode="legacy", message_handler=on_message
    ) as client:
        assert client.protocol_version != "2026-07-28"
        assert "field_notes" in names(await client.list_tools())

        await in_thread(team.owner.delete, f"/api/v1/agents/{notes['id']}")
        with anyio.fail_after(CALL_TIMEOUT_SECS):
            await heard.wait()

        assert "field_notes" not in names(await client.list_tools())
        refused = await client.call_tool("field_notes", {"input": "still there?"})
        assert refused.is_error
        assert refused.structured_content["status"] == "NOT_FOUND"


@pytest.mark.anyio
async def test_a_revoked_share_token_loses_its_tool_and_its_session(team):
    notes = deployed_agent(team.owner, "Field Notes")
    granted = team.owner.post(
        f"/api/v1/agents/{notes['id']}/grants",
        {"kind": "GRANT_KIND_DELEGATE", "label": "support bot"},
    )
    async with mcp_session(team.server.mcp_url, token=granted["token"]) as client:
        async with client.listen(tools_list_changed=True) as changes:
            assert names(await client.list_tools()) == {"field_notes"}

            await in_thread(team.owner.post, f"/api/v1/grants/{granted['grant']['id']}:revoke")
            with anyio.fail_after(CALL_TIMEOUT_SECS):
                event = await changes.__anext__()
            assert isinstance(event, ToolsListChanged), event

        # The token itself is refused now: every request gets a 401, which
        # the SDK reports as an error response.
        with pytest.raises(MCPError, match=HTTP_ERROR):
            await client.list_tools()
        with pytest.raises(MCPError, match=HTTP_ERROR):
            await client.call_tool("field_notes", {"input": "still there?"})
