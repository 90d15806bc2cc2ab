"""schemathesis against the OpenAPI document of a live `agentshare serve`.

Starts the server with the HTTP suite's server.py (on PYTHONPATH, as
tests/clients/support is, from tests/clients/run), mints a step-up session
for a user who creates an org, and runs the schemathesis CLI (from PyPI,
pinned in requirements.txt) on `GET /api/v1/openapi.json` with that user's
bearer token and org, through all four phases (examples, coverage, fuzzing,
stateful). Its checks:

- not_a_server_error: no answer is a 5xx;
- status_code_conformance, content_type_conformance,
  response_headers_conformance, response_schema_conformance: every answer
  has a status, content type, headers and JSON body the document declares;
- negative_data_rejection: a request that breaks the document is refused
  with a 4xx;
- unsupported_method, allow_header_conformance: a method a path does not
  take answers 405 with an `Allow` header naming the ones it does;
- ignored_auth, missing_required_header: a call without its credential is
  refused;
- use_after_free, ensure_resource_availability: what is deleted is gone,
  what is created can be read.

Left out: positive_data_acceptance. The document gives types but no
constraints (no `required`, no formats, no lengths), so most requests valid
against it are refused by design (an empty name, a malformed id).

WorkspaceStoreService.Watch is not run: its NDJSON stream stays open (with
heartbeats) until its credential expires, which schemathesis cannot read
as one answer; the HTTP suite reads it line by line. InvokeStream is run:
its status and content type are checked, not its lines.

The run is bounded by --max-examples per operation; the seed is fixed so a
failure reproduces. AGENTSHARE_SCHEMATHESIS_SEED and
AGENTSHARE_SCHEMATHESIS_MAX_EXAMPLES change them. After the run the server
must still be SERVING and must not have panicked.

Run it with `tests/clients/run schemathesis`.
"""

import os
import subprocess
import sys
from pathlib import Path

from server import Server, health_check, ok

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "unsupported_method",
    "allow_header_conformance",
    "ignored_auth",
    "missing_required_header",
    "use_after_free",
    "ensure_resource_availability",
]
# A never-ending stream: see above.
EXCLUDED_OPERATIONS = ["WorkspaceStoreService_Watch"]
SEED = os.environ.get("AGENTSHARE_SCHEMATHESIS_SEED", "20261204")
MAX_EXAMPLES = os.environ.get("AGENTSHARE_SCHEMATHESIS_MAX_EXAMPLES", "25")


def main():
    binary = os.environ.get("AGENTSHARE_BIN")
    report_dir = Path(os.environ.get("AGENTSHARE_SCHEMATHESIS_REPORT_DIR", "schemathesis-report"))
    if not binary:
        sys.exit("set AGENTSHARE_BIN to the agentshare binary (tests/clients/run does)")
    schemathesis = Path(sys.executable).parent / "schemathesis"
    server = Server(binary, name="schemathesis")
    try:
        token = server.token("sam", "sam@example.com", step_up=True)
        sam = server.caller(token)
        org_id = ok(sam.post("/api/v1/orgs", {"name": "Schemathesis"}))["org"]["id"]
        assert ok(sam.get("/api/v1/me"))["stepUpFresh"] is True
        command = [
            str(schemathesis),
            "run",
            f"{server.base_url}/api/v1/openapi.json",
            "--checks",
            ",".join(CHECKS),
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            SEED,
            *[f"--exclude-operation-id={operation}" for operation in EXCLUDED_OPERATIONS],
            "--header",
            f"Authorization: Bearer {token}",
            "--header",
            f"x-agentshare-org: {org_id}",
            "--request-timeout",
            "10",
            "--generation-database",
            "none",
            "--no-color",
            "--report",
            "junit",
            "--report-dir",
            str(report_dir.resolve()),
        ]
        print(
            f"schemathesis: seed {SEED}, at most {MAX_EXAMPLES} examples per operation, "
            f"checks {', '.join(CHECKS)}",
            flush=True,
        )
        # Run inside the report folder, so whatever else schemathesis writes
        # stays there.
        report_dir.mkdir(parents=True, exist_ok=True)
        status = subprocess.run(command, cwd=report_dir).returncode

        # The server outlived the run.
        problems = []
        if server.process.poll() is not None:
            problems.append(f"agentshare serve exited with {server.process.returncode}")
        elif health_check(server.base_url, "") != 1:
            problems.append("agentshare serve is no longer SERVING")
        panics = [line for line in server.lines if "panicked" in line]
        if panics:
            problems.append("agentshare serve panicked:\n" + "\n".join(panics[:20]))
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems and status == 0:
            status = 1
        if status != 0:
            print("the server's last lines:\n" + server.log(), file=sys.stderr)
        return status
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
