#!/usr/bin/env python3
"""grpc.health.v1.Health/Check through the gateway, with nothing but the
standard library: the gateway serves gRPC-Web on its one port, so a health
check is an HTTP/1.1 POST of a five-byte frame header and the protobuf
HealthCheckRequest (field 1, the service name), answered by a data frame
holding HealthCheckResponse (field 1, the status) and a trailer frame.

    health.py ADDR [--wait SECS] [SERVICE ...]

Without SERVICE it checks the server ("") and every public service the
client suites call. With --wait it waits until all are SERVING (exit 0) or
the time is up (exit 1, naming what is not); without it, it prints each
status once and exits 0 only if all are SERVING.
"""

import http.client
import struct
import sys
import time

# The gateway reports each of these SERVING once its backend answers.
PUBLIC_SERVICES = [
    "agentshare.sharing.v1.TenancyService",
    "agentshare.sharing.v1.SharingService",
    "agentshare.sharing.v1.ConnectionsService",
    "agentshare.sharing.v1.AccessService",
    "agentshare.registry.v1.AgentRegistryService",
    "agentshare.store.v1.WorkspaceStoreService",
    "agentshare.store.v1.SessionsService",
    "agentshare.store.v1.UsageService",
    "agentshare.scheduler.v1.AutomationsService",
    "agentshare.gateway.v1.InvokeService",
]
STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def check(addr, service):
    """The status name, or a short reason the check did not answer."""
    name = service.encode()
    request = b"\x0a" + bytes([len(name)]) + name if name else b""
    host, port = addr.rsplit(":", 1)
    try:
        conn = http.client.HTTPConnection(host, int(port), timeout=2)
        conn.request(
            "POST",
            "/grpc.health.v1.Health/Check",
            body=b"\x00" + struct.pack(">I", len(request)) + request,
            headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
        )
        answer = conn.getresponse()
        body = answer.read()
        conn.close()
    except OSError as e:
        return f"unreachable ({e.__class__.__name__})"
    if answer.status != 200 or len(body) < 5 or body[0] != 0:
        return f"HTTP {answer.status}"
    (length,) = struct.unpack(">I", body[1:5])
    message = body[5 : 5 + length]
    if length == 0:
        return STATUS[0]
    if len(message) == 2 and message[0] == 0x08:
        return STATUS.get(message[1], str(message[1]))
    return "malformed answer"


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    addr = args.pop(0)
    wait = None
    if args[:1] == ["--wait"]:
        wait = float(args[1])
        args = args[2:]
    services = args or [""] + PUBLIC_SERVICES
    deadline = time.monotonic() + (wait or 0)
    while True:
        statuses = {service: check(addr, service) for service in services}
        bad = {s: v for s, v in statuses.items() if v != "SERVING"}
        if wait is None:
            for service, status in statuses.items():
                print(f"{service or '(server)'}: {status}")
            sys.exit(1 if bad else 0)
        if not bad:
            return
        if time.monotonic() > deadline:
            for service, status in bad.items():
                print(f"not SERVING: {service or '(server)'}: {status}", file=sys.stderr)
            sys.exit(1)
        time.sleep(0.1)


if __name__ == "__main__":
    main()
