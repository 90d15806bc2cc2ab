"""The README's research agent story over HTTP/JSON, with `requests`, against
a real `agentshare serve`: the same story as tests/clients/python, on the
routes the gateway transcodes from the `google.api.http` annotations.

Alice builds a research agent whose web search uses her own search API key
(SHARED) and whose CRM is each user's own (USER_CONFIGURED), and shares it
with the workspace. Bob, her teammate, connects his CRM and runs it on his
own bill. A DELEGATE grant lets an anonymous visitor run it until Alice
revokes it. A run writes and reads the workspace store through the echo
runtime's tool calls. Bob subscribes to the agent's daily automation.

Answers are proto3 JSON: lowerCamelCase names, enums by name, 64-bit
integers as strings, and fields at their default value left out.
"""

from types import SimpleNamespace

import pytest
from server import fails, ok

ALICE_SEARCH_KEY = "srch-alice-0001"
BOB_CRM_KEY = "crm-bob-0001"
ALICE_CRM_KEY = "crm-alice-0001"


@pytest.fixture(scope="module")
def story(server):
    """What the steps learn and pass on: callers, ids, tokens."""
    return SimpleNamespace(
        server=server,
        alice=server.caller(server.token("alice", "alice@example.com", step_up=True)),
        bob=server.caller(server.token("bob", "bob@example.com")),
    )


def tools(search_connection_id=""):
    return [
        {
            "integrationKey": "web_search",
            "provider": "search",
            "scope": "INTEGRATION_SCOPE_SHARED",
            "connectionId": search_connection_id,
            "displayName": "Web search",
        },
        {
            "integrationKey": "crm",
            "provider": "crm",
            "scope": "INTEGRATION_SCOPE_USER_CONFIGURED",
            "displayName": "Your CRM",
        },
    ]


DAILY_BRIEF = {
    "key": "daily_brief",
    "displayName": "Daily brief at 8:00",
    "schedule": {"daily": {"timeOfDay": {"hours": 8, "minutes": 0}}},
    "timeZone": "Europe/Berlin",
    "task": "Summarise yesterday's accounts.",
    "suggestedChannels": ["NOTIFICATION_CHANNEL_WEB"],
}


def my_agent_row(caller, agent_id):
    rows = ok(caller.get("/api/v1/me/agents")).get("agents", [])
    return next((row for row in rows if row["agentId"] == agent_id), None)


def run(caller, agent_id, text, **fields):
    return caller.post(f"/api/v1/agents/{agent_id}:invoke", {"input": text, **fields})


@pytest.mark.incremental
class TestResearchAgentStory:
    def test_1_the_builder_creates_deploys_and_shares_the_research_agent(self, story):
        alice = story.alice
        created = ok(alice.post("/api/v1/orgs", {"name": "Acme"}))
        assert created["org"]["name"] == "Acme"
        assert created["defaultWorkspace"]["isDefault"] is True
        me = ok(alice.get("/api/v1/me"))
        assert me["orgId"] == created["org"]["id"]
        assert me["orgRole"] == "ORG_ROLE_OWNER"
        assert me["stepUpFresh"] is True
        story.org_id = created["org"]["id"]
        story.alice_id = me["user"]["id"]

        # Keys of the `search` provider start with `srch-`: a pasted key is
        # stored as it is, and testing it tells a wrong one apart.
        wrong = ok(
            alice.post(
                "/api/v1/connections:createApiKey",
                {"provider": "search", "apiKey": "alice-0001", "label": "Pasted the wrong key"},
            )
        )["connection"]
        tested = ok(alice.post(f"/api/v1/connections/{wrong['id']}:test"))
        assert not tested.get("ok", False)
        assert "srch-" in tested["message"], tested
        assert tested["connection"]["status"] == "CONNECTION_STATUS_FAILED"
        ok(alice.delete(f"/api/v1/connections/{wrong['id']}"))
        search = ok(
            alice.post(
                "/api/v1/connections:createApiKey",
                {"provider": "search", "apiKey": ALICE_SEARCH_KEY, "label": "Search API"},
            )
        )["connection"]
        assert search["provider"] == "search"
        assert search["status"] == "CONNECTION_STATUS_LIVE"
        assert ALICE_SEARCH_KEY not in str(search), "no call returns a secret"
        tested = ok(alice.post(f"/api/v1/connections/{search['id']}:test"))
        assert tested["ok"] is True, tested
        status = fails(
            alice.post(
                "/api/v1/connections:createApiKey",
                {"provider": "serch", "apiKey": ALICE_SEARCH_KEY, "label": "Typo"},
            ),
            "INVALID_ARGUMENT",
            "is not a configured provider",
        )
        assert status["details"] == [
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [
                    {
                        "field": "provider",
                        "description": status["details"][0]["fieldViolations"][0]["description"],
                    }
                ],
            }
        ]
        assert "serch" not in status["message"], "no error repeats unvalidated input"

        agent = ok(
            alice.post(
                "/api/v1/agents",
                {
                    "draft": {
                        "name": "Research",
                        "description": "Researches accounts on the web and in your CRM.",
                        "instructions": "Secret playbook: search first, then the CRM.",
                        "tools": tools(),
                        "automations": [DAILY_BRIEF],
                    }
                },
            )
        )["agent"]
        assert agent["state"] == "AGENT_STATE_DRAFT"
        assert agent["draftRevision"] == "1", "int64 is a JSON string"
        story.agent_id = agent_id = agent["id"]

        # A draft cannot be shared, and a SHARED tool needs the builder's
        # connection before it deploys.
        fails(alice.post(f"/api/v1/agents/{agent_id}:share"), "FAILED_PRECONDITION", "deploy")
        status = fails(
            alice.post(f"/api/v1/agents/{agent_id}:deploy", {"expectedDraftRevision": "1"}),
            "FAILED_PRECONDITION",
            "web_search",
        )
        assert [d["@type"] for d in status["details"]] == [
            "type.googleapis.com/google.rpc.PreconditionFailure"
        ]
        edited = ok(
            alice.patch(
                f"/api/v1/agents/{agent_id}/draft",
                {
                    "draft": {"tools": tools(search["id"])},
                    "updateMask": "tools",
                    "expectedDraftRevision": 1,
                },
            )
        )["agent"]
        assert edited["draftRevision"] == "2"
        assert edited["draft"]["tools"][0]["connectionId"] == search["id"]

        deployed = ok(
            alice.post(
                f"/api/v1/agents/{agent_id}:deploy",
                {"expectedDraftRevision": "2", "notes": "first version"},
            )
        )
        assert deployed["created"] is True
        assert deployed["version"]["number"] == "1"
        assert deployed["agent"]["state"] == "AGENT_STATE_ACTIVE"

        shared = ok(alice.post(f"/api/v1/agents/{agent_id}:share"))
        assert shared["sharing"]["shared"] is True
        assert shared["sharing"]["homeWorkspaceId"] == created["defaultWorkspace"]["id"]

    def test_2_a_teammate_connects_his_crm_and_runs_it_on_his_own_bill(self, story):
        alice, bob, agent_id = story.alice, story.bob, story.agent_id
        # Bob signs in once, so agentshare knows him; Alice adds him.
        bob_me = ok(bob.get("/api/v1/me"))
        assert bob_me.get("orgId", "") == ""
        story.bob_id = bob_me["user"]["id"]
        member = ok(
            alice.post(
                "/api/v1/members",
                {"email": story.server.email("bob@example.com"), "role": "ORG_ROLE_MEMBER"},
            )
        )["member"]
        assert member["role"] == "ORG_ROLE_MEMBER"

        # My Agents: shared with him, orange dot.
        row = my_agent_row(bob, agent_id)
        assert row is not None, "the shared agent is in Bob's My Agents"
        assert row["relation"] == "AGENT_RELATION_SHARED_WITH_YOU"
        assert row["setupStatus"] == "SETUP_STATUS_SETUP_REQUIRED"
        assert row["canRun"] is True
        assert row["latestVersion"] == "1"

        # He sees the design but never the instructions.
        seen = ok(bob.get(f"/api/v1/agents/{agent_id}"))["agent"]
        assert not seen.get("callerCanEdit", False)
        assert seen["draft"].get("instructions", "") == ""
        assert [t["integrationKey"] for t in seen["draft"]["tools"]] == ["web_search", "crm"]
        assert all(t.get("connectionId", "") == "" for t in seen["draft"]["tools"])

        fails(run(bob, agent_id, "accounts in Lyon"), "FAILED_PRECONDITION", "crm")
        setup = ok(bob.get(f"/api/v1/agents/{agent_id}/setup"))["setup"]
        assert setup["status"] == "SETUP_STATUS_SETUP_REQUIRED"
        assert [(m["integrationKey"], m["reason"]) for m in setup["missing"]] == [
            ("crm", "SETUP_GAP_REASON_NOT_BOUND")
        ]
        assert {
            i["integrationKey"]: i.get("bindingRequired", False) for i in setup["integrations"]
        } == {"web_search": False, "crm": True}

        crm = ok(
            bob.post(
                "/api/v1/connections:createApiKey",
                {"provider": "crm", "apiKey": BOB_CRM_KEY, "label": "My CRM"},
            )
        )["connection"]
        bound = ok(
            bob.post(
                f"/api/v1/agents/{agent_id}/integrations/crm:bind", {"connectionId": crm["id"]}
            )
        )["setup"]
        assert bound["status"] == "SETUP_STATUS_READY"
        assert bound.get("missing", []) == []
        assert my_agent_row(bob, agent_id)["setupStatus"] == "SETUP_STATUS_READY"

        answer = ok(run(bob, agent_id, "accounts in Lyon"))
        text = answer["outputText"]
        assert text.startswith("echo: accounts in Lyon"), text
        assert "web_search (search) with the agent owner's connection" in text
        assert "crm (crm) with your connection" in text
        for secret in (BOB_CRM_KEY, ALICE_SEARCH_KEY, "Secret playbook"):
            assert secret not in text
        assert answer["billedTo"] == "BILLED_PARTY_CALLER"
        assert answer["versionNumber"] == "1"
        assert answer["sessionId"]
        assert answer["finishReason"] == "FINISH_REASON_COMPLETED"

        billed = ok(bob.get("/api/v1/invocations", scope="USAGE_SCOPE_BILLED_TO_CALLER"))
        assert [r["id"] for r in billed["invocations"]] == [answer["invocationId"]]
        assert billed["invocations"][0]["billedToUserId"] == story.bob_id
        assert billed["invocations"][0]["status"] == "INVOCATION_STATUS_SUCCEEDED"
        alice_billed = ok(alice.get("/api/v1/invocations", scope="USAGE_SCOPE_BILLED_TO_CALLER"))
        assert alice_billed.get("invocations", []) == [], "Alice pays nothing for Bob's run"

        transcript = ok(bob.get(f"/api/v1/sessions/{answer['sessionId']}"))
        assert [m["content"] for m in transcript["messages"]] == ["accounts in Lyon", text]

    def test_3_an_anonymous_visitor_runs_it_on_a_delegate_grant_until_revoked(self, story):
        alice, agent_id = story.alice, story.agent_id
        granted = ok(
            alice.post(
                f"/api/v1/agents/{agent_id}/grants",
                {"kind": "GRANT_KIND_DELEGATE", "label": "website widget"},
            )
        )
        assert granted["token"].startswith(granted["grant"]["tokenPrefix"])
        assert granted["grant"]["state"] == "GRANT_STATE_ACTIVE"
        visitor = story.server.caller(grant_token=granted["token"])
        nobody = story.server.caller()

        fails(run(nobody, agent_id, "hello"), "UNAUTHENTICATED")
        # A DELEGATE run uses the owner's connections: Alice has not
        # connected a CRM of her own yet.
        fails(run(visitor, agent_id, "where are my orders?"), "FAILED_PRECONDITION", "crm")
        crm = ok(
            alice.post(
                "/api/v1/connections:createApiKey",
                {"provider": "crm", "apiKey": ALICE_CRM_KEY, "label": "Support CRM"},
            )
        )["connection"]
        ok(
            alice.post(
                f"/api/v1/agents/{agent_id}/integrations/crm:bind", {"connectionId": crm["id"]}
            )
        )

        answer = ok(run(visitor, agent_id, "where are my orders?"))
        assert answer["outputText"].startswith("echo: where are my orders?"), answer
        assert "crm (crm) with the agent owner's connection" in answer["outputText"]
        assert answer["billedTo"] == "BILLED_PARTY_AGENT_OWNER"
        assert answer["sessionSecret"], "an anonymous session has its own secret"
        # The grant allows running its agent and nothing else.
        fails(visitor.get("/api/v1/me"), "PERMISSION_DENIED")
        usage = ok(
            alice.get("/api/v1/invocations", scope="USAGE_SCOPE_BILLED_TO_CALLER", agentId=agent_id)
        )
        assert answer["invocationId"] in [r["id"] for r in usage["invocations"]], "the owner pays"

        ok(alice.post(f"/api/v1/grants/{granted['grant']['id']}:revoke"))
        fails(run(visitor, agent_id, "and now?"), "UNAUTHENTICATED", "token revoked")
        grants = ok(alice.get(f"/api/v1/agents/{agent_id}/grants", includeInactive="true"))
        assert [(g["id"], g["state"]) for g in grants["grants"]] == [
            (granted["grant"]["id"], "GRANT_STATE_REVOKED")
        ]

    def test_4_a_run_writes_and_reads_the_workspace_through_its_tools(self, story):
        bob, agent_id = story.bob, story.agent_id
        answer = ok(
            run(
                bob,
                agent_id,
                'remember the plan\n/workspace_write {"key":"plan","value":"ship"}\n'
                '/workspace_read {"key":"plan"}',
            )
        )
        text = answer["outputText"]
        assert text.startswith("echo: remember the plan"), text
        assert "workspace_write: wrote plan at revision" in text, text
        assert "workspace_read: plan = ship" in text, text
        calls = answer["toolCalls"]
        assert [(c["toolName"], c.get("succeeded", False)) for c in calls] == [
            ("workspace_write", True),
            ("workspace_read", True),
        ]
        assert calls[1]["resultSummary"] == "plan = ship"
        assert calls[0]["phase"] == "TOOL_CALL_PHASE_FINISHED"

        # Bob reads the same item as himself: the agent's team store. Store
        # keys may hold `/`, so they travel in the query, never the path.
        item = ok(bob.get(f"/api/v1/agents/{agent_id}/store:read", key="plan"))["item"]
        assert (item["key"], item["value"]) == ("plan", "ship")
        assert item["createdBy"] == agent_id
        fails(bob.get(f"/api/v1/agents/{agent_id}/store:read", key="no-such-key"), "NOT_FOUND")

    def test_5_a_teammate_subscribes_to_the_daily_automation(self, story):
        bob, agent_id = story.bob, story.agent_id
        offered = ok(bob.get(f"/api/v1/agents/{agent_id}/automations"))["automations"]
        assert [a["key"] for a in offered] == ["daily_brief"]
        brief = offered[0]
        assert brief["schedule"]["description"] == "Daily at 08:00 Europe/Berlin"
        assert brief["schedule"]["cron"] == "0 8 * * *"
        assert len(brief["nextFireTimes"]) == 3
        assert brief["canEnable"] is True
        assert "mySubscription" not in brief, "automations are off by default"

        subscribed = ok(
            bob.post(
                f"/api/v1/agents/{agent_id}/automations/daily_brief:subscribe",
                {"enabled": True, "channels": ["NOTIFICATION_CHANNEL_WEB"]},
            )
        )["subscription"]
        assert subscribed["enabled"] is True
        assert subscribed["status"] == "SUBSCRIPTION_STATUS_ACTIVE"
        fails(
            bob.post(f"/api/v1/agents/{agent_id}/automations/daily_brief:subscribe"),
            "ALREADY_EXISTS",
        )

        mine = ok(bob.get("/api/v1/me/subscriptions"))["subscriptions"]
        assert [(s["agentId"], s["automationKey"]) for s in mine] == [(agent_id, "daily_brief")]
        row = mine[0]
        assert row["id"] == subscribed["id"]
        assert row["userId"] == story.bob_id
        assert row["enabled"] is True
        assert row["status"] == "SUBSCRIPTION_STATUS_ACTIVE"
        assert row["channels"] == ["NOTIFICATION_CHANNEL_WEB"]
        assert "nextRunTime" in row
        assert row["agentName"] == "Research"
        assert row["scheduleDescription"] == "Daily at 08:00 Europe/Berlin"
        # Alice subscribed to nothing: each user's switch is their own.
        assert ok(story.alice.get("/api/v1/me/subscriptions")).get("subscriptions", []) == []
