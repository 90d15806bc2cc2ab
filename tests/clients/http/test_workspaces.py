"""The workspaces seed (003_*) over HTTP/JSON: its three routes and its
400, 403 and 409 answers, with `requests`, against a real `agentshare serve`.

Olivia owns the Globex org and turns workspaces on; it has its default
workspace, Research and Sales. Pat is an org member in the default workspace
and in Research, not in Sales. Bodies of the seed's routes use the seed's own
field names (`workspace_ids`, `workspace_id`), which the gateway accepts as
the original proto names.
"""

import uuid
from types import SimpleNamespace

import pytest
from server import fails, ok


@pytest.fixture(scope="module")
def org(server):
    """What the steps learn and pass on. Privileged mutations need step-up,
    so Olivia and Pat each have a step-up session and a plain one."""
    return SimpleNamespace(
        server=server,
        olivia=server.caller(server.token("olivia", "olivia@example.com", step_up=True)),
        olivia_plain=server.caller(server.token("olivia", "olivia@example.com")),
        pat=server.caller(server.token("pat", "pat@example.com", step_up=True)),
        pat_plain=server.caller(server.token("pat", "pat@example.com")),
    )


def workspace_ids(sharing):
    return {w["id"] for w in sharing.get("workspaces", [])}


def create_agent(caller, name, **fields):
    return ok(caller.post("/api/v1/agents", {"draft": {"name": name}, **fields}))["agent"]


def deploy_and_share(caller, agent):
    ok(
        caller.post(
            f"/api/v1/agents/{agent['id']}:deploy",
            {"expectedDraftRevision": agent["draftRevision"]},
        )
    )
    ok(caller.post(f"/api/v1/agents/{agent['id']}:share"))


@pytest.mark.incremental
class TestWorkspaces:
    def test_1_the_owner_turns_workspaces_on_and_creates_two(self, org):
        olivia, pat = org.olivia, org.pat_plain
        created = ok(olivia.post("/api/v1/orgs", {"name": "Globex"}))
        org.org_id = created["org"]["id"]
        org.default = created["defaultWorkspace"]["id"]
        # Turning workspaces on is a privileged mutation of the owner.
        fails(
            org.olivia_plain.patch(f"/api/v1/orgs/{org.org_id}", {"workspacesEnabled": True}),
            "PERMISSION_DENIED",
            "step-up required",
        )
        updated = ok(olivia.patch(f"/api/v1/orgs/{org.org_id}", {"workspacesEnabled": True}))
        assert updated["org"]["workspacesEnabled"] is True

        fails(
            org.olivia_plain.post("/api/v1/workspaces", {"name": "Research"}),
            "PERMISSION_DENIED",
            "step-up required",
        )
        org.research = ok(olivia.post("/api/v1/workspaces", {"name": "Research"}))["workspace"][
            "id"
        ]
        org.sales = ok(olivia.post("/api/v1/workspaces", {"name": "Sales"}))["workspace"]["id"]
        fails(olivia.post("/api/v1/workspaces", {"name": "Sales"}), "ALREADY_EXISTS")

        # Pat signs in once; Olivia adds him to the org and to Research.
        org.pat_id = ok(pat.get("/api/v1/me"))["user"]["id"]
        ok(
            olivia.post(
                "/api/v1/members",
                {"email": org.server.email("pat@example.com"), "role": "ORG_ROLE_MEMBER"},
            )
        )
        ok(
            olivia.post(
                f"/api/v1/workspaces/{org.research}/members",
                {"user_id": org.pat_id, "role": "WORKSPACE_ROLE_MEMBER"},
            )
        )
        mine = {m["workspace"]["id"] for m in ok(pat.get("/api/v1/workspaces"))["workspaces"]}
        assert org.research in mine and org.sales not in mine, mine
        assert ok(pat.get("/api/v1/me"))["workspaceId"] == org.default

    def test_2_patch_replaces_the_list_keeps_home_and_needs_step_up(self, org):
        olivia = org.olivia
        agent = create_agent(olivia, "Triage")
        assert agent["homeWorkspaceId"] == org.default
        deploy_and_share(olivia, agent)
        org.triage = triage = agent["id"]
        path = f"/api/v1/agents/{triage}/workspaces"

        sharing = ok(olivia.get(path))["sharing"]
        assert sharing["homeWorkspaceId"] == org.default
        assert workspace_ids(sharing) == {org.default}

        # A privileged mutation: a session without step-up gets 403.
        fails(
            org.olivia_plain.patch(path, {"workspace_ids": [org.research]}),
            "PERMISSION_DENIED",
            "step-up required",
        )
        assert workspace_ids(ok(olivia.get(path))["sharing"]) == {org.default}, "nothing changed"

        changed = ok(olivia.patch(path, {"workspace_ids": [org.research, org.sales]}))
        assert workspace_ids(changed["sharing"]) == {org.default, org.research, org.sales}
        assert set(changed["addedWorkspaceIds"]) == {org.research, org.sales}
        assert changed.get("removedWorkspaceIds", []) == []

        # GET lists only the workspaces the caller can access: Pat is not in
        # Sales.
        seen = ok(org.pat_plain.get(path))["sharing"]
        assert org.research in workspace_ids(seen)
        assert org.sales not in workspace_ids(seen), seen

        # PATCH sets the full list; the home workspace is always kept.
        changed = ok(olivia.patch(path, {"workspace_ids": [org.sales]}))
        assert workspace_ids(changed["sharing"]) == {org.default, org.sales}
        assert changed["removedWorkspaceIds"] == [org.research]
        changed = ok(olivia.patch(path, {"workspace_ids": []}))
        assert workspace_ids(changed["sharing"]) == {org.default}
        assert changed["removedWorkspaceIds"] == [org.sales]
        # Listing the home workspace itself is the same list.
        changed = ok(olivia.patch(path, {"workspace_ids": [org.default, org.research]}))
        assert workspace_ids(changed["sharing"]) == {org.default, org.research}

        # Ids that are malformed or unknown in this org.
        status = fails(olivia.patch(path, {"workspace_ids": ["not-a-uuid"]}), "INVALID_ARGUMENT")
        assert status["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
        fails(
            olivia.patch(path, {"workspace_ids": [org.research, org.research]}),
            "INVALID_ARGUMENT",
        )
        fails(olivia.patch(path, {"workspace_ids": [str(uuid.uuid4())]}), "NOT_FOUND")

    def test_3_the_caller_must_belong_to_every_workspace_they_add(self, org):
        pat = org.pat
        agent = create_agent(pat, "Pat's notes")
        deploy_and_share(pat, agent)
        org.pat_agent = agent["id"]
        path = f"/api/v1/agents/{agent['id']}/workspaces"
        fails(
            pat.patch(path, {"workspace_ids": [org.sales]}),
            "PERMISSION_DENIED",
            "not a member of workspace",
        )
        changed = ok(pat.patch(path, {"workspace_ids": [org.research]}))
        assert workspace_ids(changed["sharing"]) == {org.default, org.research}
        # Only the owner sets an agent's list, step-up or not.
        fails(
            pat.patch(f"/api/v1/agents/{org.triage}/workspaces", {"workspace_ids": []}),
            "PERMISSION_DENIED",
        )

    def test_4_switch_changes_the_sessions_active_workspace(self, org):
        pat = org.pat_plain
        assert ok(pat.get("/api/v1/me"))["workspaceId"] == org.default
        switched = ok(pat.post("/api/v1/workspaces/switch", {"workspace_id": org.research}))
        assert switched["workspace"]["id"] == org.research
        assert switched["workspace"]["name"] == "Research"
        # Later requests of that session act in Research ...
        assert ok(pat.get("/api/v1/me"))["workspaceId"] == org.research
        agent = create_agent(pat, "Research helper")
        assert agent["homeWorkspaceId"] == org.research, "a new agent lands in Research"
        org.research_agent = agent["id"]
        # ... unless a request names another workspace in the header ...
        named = ok(
            pat.request("GET", "/api/v1/me", headers={"x-agentshare-workspace": org.default})
        )
        assert named["workspaceId"] == org.default
        # ... and another session of Pat's is where it was.
        other = org.server.caller(org.server.token("pat", "pat@example.com"))
        assert ok(other.get("/api/v1/me"))["workspaceId"] == org.default

        # Only a workspace the caller belongs to can be chosen.
        fails(pat.post("/api/v1/workspaces/switch", {"workspace_id": org.sales}), "NOT_FOUND")
        fails(
            pat.post("/api/v1/workspaces/switch", {"workspace_id": str(uuid.uuid4())}),
            "NOT_FOUND",
        )
        assert ok(pat.get("/api/v1/me"))["workspaceId"] == org.research

    def test_5_the_default_workspace_cannot_be_deleted(self, org):
        status = fails(
            org.olivia.delete(f"/api/v1/workspaces/{org.default}"), "FAILED_PRECONDITION"
        )
        assert status["code"] == 9
        assert ok(org.olivia.get(f"/api/v1/workspaces/{org.default}"))["workspace"]["workspace"][
            "isDefault"
        ]

    def test_6_the_org_default_agent_cannot_be_reshared(self, org):
        olivia = org.olivia
        default_agent = ok(olivia.get("/api/v1/defaultAgent"))["agent"]
        assert default_agent["isDefault"] is True
        assert default_agent.get("homeWorkspaceId", "") == ""
        agent_id = default_agent["id"]
        fails(olivia.post(f"/api/v1/agents/{agent_id}:share"), "PERMISSION_DENIED")
        fails(
            olivia.patch(
                f"/api/v1/agents/{agent_id}/workspaces", {"workspace_ids": [org.research]}
            ),
            "PERMISSION_DENIED",
        )
        fails(olivia.delete(f"/api/v1/agents/{agent_id}"), "PERMISSION_DENIED")
        # It is visible to every member, in every workspace.
        assert ok(org.pat_plain.get("/api/v1/defaultAgent"))["agent"]["id"] == agent_id

    def test_7_a_managed_agents_workspaces_cannot_change(self, org):
        olivia = org.olivia
        managed = create_agent(olivia, "Compliance", isManaged=True)
        assert managed["isManaged"] is True
        # Only org owners and admins flag an agent as managed.
        fails(
            org.pat.post("/api/v1/agents", {"draft": {"name": "Mine"}, "isManaged": True}),
            "PERMISSION_DENIED",
        )
        deploy_and_share(olivia, managed)
        fails(
            olivia.patch(
                f"/api/v1/agents/{managed['id']}/workspaces", {"workspace_ids": [org.research]}
            ),
            "PERMISSION_DENIED",
        )
        fails(olivia.delete(f"/api/v1/agents/{managed['id']}"), "PERMISSION_DENIED")
        sharing = ok(olivia.get(f"/api/v1/agents/{managed['id']}/workspaces"))["sharing"]
        assert workspace_ids(sharing) == {org.default}

    def test_8_a_workspace_holding_agents_or_projects_is_deleted_only_once_empty(self, org):
        olivia, pat = org.olivia, org.pat_plain
        path = f"/api/v1/workspaces/{org.research}"
        # Research is the home of Pat's "Research helper".
        fails(olivia.delete(path), "ABORTED", org.research_agent)
        # Pat's session is still in Research: his project lands there.
        project = ok(pat.post("/api/v1/projects", {"name": "Q3 accounts"}))["project"]
        assert project["homeWorkspaceId"] == org.research
        ok(pat.delete(f"/api/v1/agents/{org.research_agent}"))
        fails(olivia.delete(path), "ABORTED", project["id"])
        # A privileged mutation: without step-up, 403 whatever it holds.
        fails(org.olivia_plain.delete(path), "PERMISSION_DENIED", "step-up required")
        ok(pat.delete(f"/api/v1/projects/{project['id']}"))

        # Agents merely shared into it (Triage, Pat's notes) do not count.
        assert ok(olivia.delete(path)) == {}
        fails(olivia.get(path), "NOT_FOUND")
        listed = {w["workspace"]["id"] for w in ok(olivia.get("/api/v1/workspaces"))["workspaces"]}
        assert listed == {org.default, org.sales}
        sharing = ok(olivia.get(f"/api/v1/agents/{org.triage}/workspaces"))["sharing"]
        assert workspace_ids(sharing) == {org.default}
