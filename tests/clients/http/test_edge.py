"""What the edge itself promises over HTTP/JSON, with `requests`: errors as
JSON google.rpc.Status under Google's HTTP mapping, 404 and 405 for routes it
does not have, server streams as newline-delimited JSON, the OpenAPI
document, and CORS from `http.allowed_origins`.

Streams are read line by line as they arrive: the test waits for the line it
needs (the `requests` read timeout is the only bound), never for a fixed time.
"""

from types import SimpleNamespace

import pytest
from server import CALL_TIMEOUT_SECS, describe, fails, ndjson, ok

BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


@pytest.fixture(scope="module")
def edge(server):
    """Erin's org and a deployed agent of hers with no integrations."""
    erin = server.caller(server.token("erin", "erin@example.com", step_up=True))
    ok(erin.post("/api/v1/orgs", {"name": "Edge"}))
    agent = ok(erin.post("/api/v1/agents", {"draft": {"name": "Streamer"}}))["agent"]
    ok(erin.post(f"/api/v1/agents/{agent['id']}:deploy", {"expectedDraftRevision": "1"}))
    return SimpleNamespace(server=server, erin=erin, agent_id=agent["id"])


def body_violation(status):
    """The one BadRequest field violation of a Status."""
    assert [d["@type"] for d in status["details"]] == [BAD_REQUEST], status
    (violation,) = status["details"][0]["fieldViolations"]
    return violation


class TestErrors:
    def test_a_malformed_body_is_a_status_with_bad_request_details(self, edge):
        erin = edge.erin
        for raw, fragment in [
            ('{"name": ', "not valid JSON"),
            ("[1]", "must be a JSON object"),
            ('{"name": 5}', "expected a string"),
            ('{"nmae": "Typo"}', "unrecognized field name 'nmae'"),
        ]:
            answer = erin.session.post(
                f"{edge.server.base_url}/api/v1/orgs",
                data=raw,
                headers={"Content-Type": "application/json"},
                timeout=CALL_TIMEOUT_SECS,
            )
            status = fails(answer, "INVALID_ARGUMENT", fragment)
            violation = body_violation(status)
            assert violation["field"] == "body", status
            assert fragment in violation["description"], status

    def test_a_rule_broken_by_a_field_names_the_field(self, edge):
        status = fails(edge.erin.post("/api/v1/orgs", {"name": ""}), "INVALID_ARGUMENT")
        assert body_violation(status) == {"field": "name", "description": "must not be empty"}
        status = fails(
            edge.erin.request("DELETE", "/api/v1/workspaces/not-a-uuid"), "INVALID_ARGUMENT"
        )
        assert body_violation(status)["field"] == "workspace_id"

    def test_a_body_breaking_many_rules_gets_the_first_hundred_not_a_500(self, edge):
        # 40 linked files, each breaking three rules: 120 field violations
        # (found by schemathesis; "no input causes a panic, INTERNAL means a
        # bug"). The answer names three in its message and lists the first
        # 100 in its details, so it fits the HTTP/2 trailer it travels in.
        files = [{"name": ""} for _ in range(40)]
        answer = edge.erin.post("/api/v1/agents", {"draft": {"name": "Many files", "files": files}})
        status = fails(answer, "INVALID_ARGUMENT")
        assert [d["@type"] for d in status["details"]] == [BAD_REQUEST], status
        listed = [v["field"] for v in status["details"][0]["fieldViolations"]]
        assert len(listed) == 100, listed
        assert "draft.files[0].name" in listed, listed
        assert status["message"].endswith(
            "and 117 more (the details list the first 100 of 120)"
        ), status["message"]

    def test_an_unknown_query_parameter_is_rejected(self, edge):
        status = fails(edge.erin.get("/api/v1/agents", nosuch="1"), "INVALID_ARGUMENT")
        assert body_violation(status)["field"] == "query"

    def test_a_malformed_query_value_names_the_parameter_not_a_body(self, edge):
        # A GET has no body: the violation names the parameter.
        status = fails(edge.erin.get("/api/v1/agents", pageSize="abc"), "INVALID_ARGUMENT")
        assert body_violation(status)["field"] in ("pageSize", "page_size", "query"), status

    def test_a_body_needs_the_json_content_type(self, edge):
        answer = edge.erin.session.post(
            f"{edge.server.base_url}/api/v1/orgs",
            data='{"name": "Plain"}',
            headers={"Content-Type": "text/plain"},
            timeout=CALL_TIMEOUT_SECS,
        )
        fails(answer, "INVALID_ARGUMENT", "Content-Type: application/json")

    def test_an_unknown_route_is_404(self, edge):
        for path in ["/api/v1/nothing", "/api/v2/agents", "/api/v1/agents/x/y/z", "/"]:
            status = fails(edge.erin.get(path), "NOT_FOUND", "no route")
            assert "/api/v1/openapi.json" in status["message"]

    def test_a_wrong_method_is_405_with_allow(self, edge):
        erin = edge.erin
        answer = erin.request("PUT", "/api/v1/orgs", body={})
        assert answer.status_code == 405, describe(answer)
        assert answer.headers["content-type"].startswith("application/json")
        assert sorted(answer.headers["allow"].replace(" ", "").split(",")) == ["GET", "POST"]
        assert answer.json()["code"] == 12, "UNIMPLEMENTED"
        answer = erin.get(f"/api/v1/agents/{edge.agent_id}:invoke")
        assert answer.status_code == 405, describe(answer)
        assert answer.headers["allow"] == "POST"
        answer = erin.request("DELETE", "/api/v1/me")
        assert answer.status_code == 405, describe(answer)

    def test_no_credential_is_401_with_www_authenticate(self, edge):
        nobody = edge.server.caller()
        fails(nobody.get("/api/v1/me"), "UNAUTHENTICATED", "authorization: Bearer")
        forged = edge.server.caller(token="not-a-token")
        fails(forged.get("/api/v1/me"), "UNAUTHENTICATED")

    def test_the_openapi_document_lists_the_seed_routes(self, edge):
        document = ok(edge.server.caller().get("/api/v1/openapi.json"))
        assert document["openapi"].startswith("3.")
        paths = document["paths"]
        operation_ids = {
            (method.upper(), path): operation["operationId"]
            for path, item in paths.items()
            for method, operation in item.items()
        }
        assert operation_ids[("GET", "/api/v1/agents/{agent_id}/workspaces")] == (
            "SharingService_GetAgentWorkspaces"
        )
        assert operation_ids[("PATCH", "/api/v1/agents/{agent_id}/workspaces")] == (
            "SharingService_SetAgentWorkspaces"
        )
        assert operation_ids[("POST", "/api/v1/workspaces/switch")] == (
            "TenancyService_SwitchWorkspace"
        )
        stream = paths["/api/v1/agents/{agent_id}:invokeStream"]["post"]["responses"]["200"]
        assert list(stream["content"]) == ["application/x-ndjson"]


class TestStreams:
    def test_invoke_stream_sends_started_deltas_and_completed(self, edge):
        answer = edge.erin.request(
            "POST",
            f"/api/v1/agents/{edge.agent_id}:invokeStream",
            body={"input": 'hello there\n/workspace_write {"key":"notes/run","value":"x"}'},
            stream=True,
        )
        with answer:
            assert answer.status_code == 200, describe(answer)
            assert answer.headers["content-type"] == "application/x-ndjson"
            events = [line["result"] for line in ndjson(answer)]
        kinds = [next(iter(event)) for event in events]
        assert kinds[0] == "started" and kinds[-1] == "completed", kinds
        assert set(kinds[1:-1]) == {"textDelta", "toolCall"}, kinds
        started, completed = events[0]["started"], events[-1]["completed"]
        assert started["versionNumber"] == "1"
        assert completed["invocationId"] == started["invocationId"]
        assert completed["sessionId"] == started["sessionId"]
        assert completed["finishReason"] == "FINISH_REASON_COMPLETED"
        deltas = "".join(e["textDelta"]["text"] for e in events if "textDelta" in e)
        assert deltas == completed["outputText"]
        assert deltas.startswith("echo: hello there"), deltas
        phases = [
            (e["toolCall"]["toolName"], e["toolCall"]["phase"]) for e in events if "toolCall" in e
        ]
        assert phases == [
            ("workspace_write", "TOOL_CALL_PHASE_STARTED"),
            ("workspace_write", "TOOL_CALL_PHASE_FINISHED"),
        ]

    def test_a_stream_that_fails_before_its_first_message_is_a_plain_error(self, edge):
        missing = "01a2428d-5faf-768a-816a-b37b45a798f2"
        answer = edge.erin.post(f"/api/v1/agents/{missing}:invokeStream", {"input": "x"})
        fails(answer, "NOT_FOUND", missing)
        fails(
            edge.server.caller().post(f"/api/v1/agents/{missing}:invokeStream", {}),
            "UNAUTHENTICATED",
        )

    def test_watch_streams_a_change_written_by_another_call(self, edge):
        erin, agent_id = edge.erin, edge.agent_id
        watch = erin.request(
            "GET",
            f"/api/v1/agents/{agent_id}/store:watch",
            params={"keyPrefix": "notes/"},
            stream=True,
        )
        with watch:
            assert watch.status_code == 200, describe(watch)
            assert watch.headers["content-type"] == "application/x-ndjson"
            lines = ndjson(watch)
            # The stream has caught up with the partition: from here on,
            # every change arrives.
            first = next(lines)["result"]
            assert "progress" in first, first
            # Another call writes: the agent runs and calls its tool.
            run = ok(
                erin.post(
                    f"/api/v1/agents/{agent_id}:invoke",
                    {"input": 'note it\n/workspace_write {"key":"notes/watched","value":"seen"}'},
                )
            )
            assert "workspace_write: wrote notes/watched" in run["outputText"], run
            change = next(
                line["result"]["change"] for line in lines if "change" in line.get("result", {})
            )
            assert change["kind"] == "WORKSPACE_CHANGE_KIND_PUT"
            assert change["key"] == "notes/watched"
            assert change["item"]["value"] == "seen"
            assert int(change["revision"]) > int(first["progress"]["revision"])
            # So does a direct write through the store route.
            written = ok(
                erin.post(
                    f"/api/v1/agents/{agent_id}/store:write", {"key": "notes/direct", "value": "2"}
                )
            )["item"]
            change = next(
                line["result"]["change"] for line in lines if "change" in line.get("result", {})
            )
            assert (change["key"], change["revision"]) == ("notes/direct", written["revision"])
            # Keys outside the prefix are filtered out; a later one proves it.
            ok(erin.post(f"/api/v1/agents/{agent_id}/store:write", {"key": "other", "value": "3"}))
            ok(
                erin.post(
                    f"/api/v1/agents/{agent_id}/store:write", {"key": "notes/last", "value": "4"}
                )
            )
            change = next(
                line["result"]["change"] for line in lines if "change" in line.get("result", {})
            )
            assert change["key"] == "notes/last"

    def test_a_stream_that_fails_after_it_started_ends_with_an_error_line(self, edge):
        erin, agent_id = edge.erin, edge.agent_id
        watch = erin.request("GET", f"/api/v1/agents/{agent_id}/store:watch", stream=True)
        with watch:
            assert watch.status_code == 200, describe(watch)
            lines = ndjson(watch)
            assert "progress" in next(lines)["result"]
            # Sharing the agent moves Erin's store from her private one to
            # the agent's: the open stream ends with ABORTED.
            ok(erin.post(f"/api/v1/agents/{agent_id}:share"))
            last = None
            for last in lines:
                if "error" in last:
                    break
            assert last is not None and "error" in last, last
            assert last["error"]["code"] == 10, last
            assert "watch again" in last["error"]["message"], last
            assert list(lines) == [], "the error line is the last"


ALLOWED = "https://app.example.com"


def preflight(server, origin, method="POST"):
    return server.caller().request(
        "OPTIONS",
        "/api/v1/orgs",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )


class TestCors:
    def test_an_allowed_origin_gets_cors_headers_and_others_do_not(self, start_server):
        server = start_server(
            {"AGENTSHARE_HTTP__ALLOWED_ORIGINS": f"{ALLOWED},https://admin.example.com"}
        )
        for origin in [ALLOWED, "https://admin.example.com"]:
            answer = preflight(server, origin)
            assert answer.status_code in (200, 204), describe(answer)
            assert answer.headers.get("access-control-allow-origin") == origin, answer.headers
            assert "POST" in answer.headers["access-control-allow-methods"]
            allowed_headers = answer.headers["access-control-allow-headers"].lower()
            assert "authorization" in allowed_headers and "content-type" in allowed_headers

        answer = preflight(server, "https://evil.example.com")
        assert "access-control-allow-origin" not in answer.headers, answer.headers

        # The answer itself carries the header too, for the allowed origin.
        token = server.token("cora", "cora@example.com")
        caller = server.caller(token=token)
        answer = caller.request("GET", "/api/v1/me", headers={"Origin": ALLOWED})
        ok(answer)
        assert answer.headers.get("access-control-allow-origin") == ALLOWED
        answer = caller.request("GET", "/api/v1/me", headers={"Origin": "https://evil.example.com"})
        ok(answer)
        assert "access-control-allow-origin" not in answer.headers

    def test_no_origin_is_allowed_by_default(self, server):
        for origin in [ALLOWED, "https://evil.example.com", "null"]:
            answer = preflight(server, origin)
            assert "access-control-allow-origin" not in answer.headers, answer.headers
        answer = server.caller().request("GET", "/api/v1/openapi.json", headers={"Origin": ALLOWED})
        ok(answer)
        assert "access-control-allow-origin" not in answer.headers
