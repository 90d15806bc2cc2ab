"""A real `agentshare serve`, and callers that reach its HTTP/JSON routes
with `requests`, an HTTP client we did not write.

Nothing is generated: the routes are the ones the gateway transcodes from the
`google.api.http` annotations in proto/ (and lists in /api/v1/openapi.json).
The server is started by tests/clients/support/serve.py from AGENTSHARE_BIN.
The schemathesis driver starts its server with this module too.
"""

import json
import struct

import requests
from serve import CALL_TIMEOUT_SECS, ServeProcess

# Google's mapping of gRPC codes to HTTP statuses, by code number.
HTTP_STATUS = {
    3: 400,  # INVALID_ARGUMENT
    5: 404,  # NOT_FOUND
    6: 409,  # ALREADY_EXISTS
    7: 403,  # PERMISSION_DENIED
    8: 429,  # RESOURCE_EXHAUSTED
    9: 400,  # FAILED_PRECONDITION
    10: 409,  # ABORTED
    11: 400,  # OUT_OF_RANGE
    12: 501,  # UNIMPLEMENTED
    16: 401,  # UNAUTHENTICATED
}
CODE = {
    "INVALID_ARGUMENT": 3,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "UNAUTHENTICATED": 16,
}


def health_check(base_url, service):
    """grpc.health.v1.Health/Check over gRPC-Web, which the same port serves:
    a five-byte frame header and the protobuf HealthCheckRequest (field 1,
    the service name), answered by a data frame holding HealthCheckResponse
    (field 1, the status; 1 is SERVING) and a trailer frame. Returns the
    status number, or None."""
    name = service.encode()
    request = b"\x0a" + bytes([len(name)]) + name if name else b""
    answer = requests.post(
        f"{base_url}/grpc.health.v1.Health/Check",
        data=b"\x00" + struct.pack(">I", len(request)) + request,
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
    """`agentshare serve` (see tests/clients/support/serve.py), its health
    asked over gRPC-Web; `env` adds settings (such as
    AGENTSHARE_HTTP__ALLOWED_ORIGINS)."""

    def __init__(self, binary, env=None, name="http"):
        super().__init__(binary, name=name, env=env)

    def connect(self):
        self.base_url = f"http://{self.address}"

    def serving(self, service):
        try:
            return health_check(self.base_url, service) == 1
        except requests.RequestException:
            return False

    def caller(self, token=None, grant_token=None, headers=None):
        return Caller(self.base_url, token=token, grant_token=grant_token, headers=headers)


class Caller:
    """One caller's view of the HTTP/JSON routes: a session token, a share
    token, or both, as `Authorization: Bearer …` and
    `x-agentshare-grant-token`, plus any other headers (the org and
    workspace choice). Each method returns the `requests` response."""

    def __init__(self, base_url, token=None, grant_token=None, headers=None):
        self.base_url = base_url
        self.session = requests.Session()
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"
        if grant_token is not None:
            self.session.headers["x-agentshare-grant-token"] = grant_token
        self.session.headers.update(headers or {})

    def request(self, method, path, body=None, params=None, headers=None, stream=False):
        return self.session.request(
            method,
            self.base_url + path,
            json=body,
            params=params,
            headers=headers,
            stream=stream,
            timeout=CALL_TIMEOUT_SECS,
        )

    def get(self, path, **params):
        return self.request("GET", path, params=params)

    def delete(self, path, **params):
        return self.request("DELETE", path, params=params)

    def post(self, path, body=None):
        return self.request("POST", path, body={} if body is None else body)

    def patch(self, path, body):
        return self.request("PATCH", path, body=body)


def describe(response):
    return f"{response.request.method} {response.request.path_url} -> {response.status_code}: {response.text[:2000]}"


def ok(response):
    """The JSON answer of a call that must succeed."""
    assert response.status_code == 200, describe(response)
    assert response.headers["content-type"].startswith("application/json"), describe(response)
    return response.json()


def fails(response, code, *fragments):
    """Checks a call that must fail with the gRPC `code` (a name): the HTTP
    status of Google's mapping and a JSON google.rpc.Status whose message
    holds every fragment. Returns the Status."""
    number = CODE[code]
    assert response.status_code == HTTP_STATUS[number], describe(response)
    assert response.headers["content-type"].startswith("application/json"), describe(response)
    status = response.json()
    assert status["code"] == number, describe(response)
    for fragment in fragments:
        assert fragment in status["message"], describe(response)
    if number == 16:
        assert response.headers.get("www-authenticate", "").startswith("Bearer"), describe(response)
    return status


def ndjson(response):
    """Yields the parsed lines of a newline-delimited JSON answer as they
    arrive (chunk_size None: whatever the server has sent, without waiting
    for more)."""
    for line in response.iter_lines(chunk_size=None):
        if line:
            yield json.loads(line)
