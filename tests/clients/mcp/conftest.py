"""Fixtures of the MCP suite: one `agentshare serve` with the built-in echo
runtime for the session (gateway.py), more servers with their own settings
on demand, and a fresh team per test: an org whose owner builds and shares
agents and whose member uses them.

Tests are coroutines run by anyio's pytest plugin on asyncio, as the SDK is
async.
"""

import itertools
from types import SimpleNamespace

import pytest
from gateway import Server
from serve import EXTERNAL_GATEWAY, agentshare_binary

_teams = itertools.count(1)


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="session")
def server():
    running = Server(agentshare_binary())
    yield running
    running.stop()


@pytest.fixture(scope="session")
def start_server():
    """Starts more servers with their own settings; stops them at the end."""
    started = []

    def start(env, name="mcp"):
        if EXTERNAL_GATEWAY:
            pytest.skip("needs a server of its own settings; AGENTSHARE_GATEWAY names a running one")
        running = Server(agentshare_binary(), env=env, name=name)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def new_team(server, org_name="Acme"):
    """A fresh org on `server`: its owner (a step-up session, as sharing
    and grants ask) and a member, each with a session token of their own
    and an HTTP/JSON caller, and the org default agent every member runs.
    Users are new per team, so each test sees only its own agents."""
    n = next(_teams)
    owner, member = f"owner{n}", f"member{n}"
    team = SimpleNamespace(server=server)
    team.owner_token = server.token(owner, f"{owner}@example.com", step_up=True)
    team.member_token = server.token(member, f"{member}@example.com")
    team.owner = server.api(team.owner_token)
    team.member = server.api(team.member_token)
    created = team.owner.post("/api/v1/orgs", {"name": f"{org_name} {n}"})
    team.org_id = created["org"]["id"]
    # The member signs in once, so agentshare knows them; the owner adds them.
    team.member.get("/api/v1/me")
    team.owner.post(
        "/api/v1/members",
        {"email": server.email(f"{member}@example.com"), "role": "ORG_ROLE_MEMBER"},
    )
    team.default_agent = team.member.get("/api/v1/defaultAgent")["agent"]
    return team


@pytest.fixture
def team(server):
    return new_team(server)


def deployed_agent(api, name, description="", share=True):
    """An agent `api`'s user builds (no integrations), deploys and, unless
    `share` is False, shares with its workspace."""
    agent = api.post("/api/v1/agents", {"draft": {"name": name, "description": description}})[
        "agent"
    ]
    api.post(
        f"/api/v1/agents/{agent['id']}:deploy",
        {"expectedDraftRevision": agent["draftRevision"]},
    )
    if share:
        api.post(f"/api/v1/agents/{agent['id']}:share")
    return agent
