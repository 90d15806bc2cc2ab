"""A real `agentshare serve` for the Python client suites (python, http,
schemathesis): a fresh data dir, a port the OS picks, the address read from
its stderr, a wait until every public service is SERVING, session tokens
minted by `agentshare token`, and a kill and cleanup at the end.

Or a gateway that already runs (deploy/local/up): AGENTSHARE_GATEWAY names
its address and AGENTSHARE_KEYS_DIR the keys dir `agentshare token` signs
with. Nothing is started or stopped then, and since every suite of a run
shares that server, each user (IdP subject) and email gets this run's tag
(`alice` → `alice-<tag>`, `alice@example.com` → `alice-<tag>@example.com`;
a suite that names a user's email itself asks `email()`), so no two runs
or suites meet the same user.

How a suite reaches the server, and so how it asks for health, is its own:
a suite subclasses ServeProcess with `connect` and `serving`.
tests/clients/run puts this folder on PYTHONPATH.
"""

import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid

SERVING_LINE = re.compile(r"agentshare is serving on (\S+:\d+) \(data dir ")
START_WITHIN_SECS = 30
CALL_TIMEOUT_SECS = 15

# Every public service the suites call; the gateway reports each SERVING
# once its backend does.
SERVICES = [
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


# The gateway of a running topology, if the suites target one.
EXTERNAL_GATEWAY = os.environ.get("AGENTSHARE_GATEWAY", "")
# This run's tag for user names and emails on a shared server.
RUN_TAG = os.environ.get("AGENTSHARE_RUN_TAG") or uuid.uuid4().hex[:10]


def agentshare_binary():
    """The agentshare binary AGENTSHARE_BIN names."""
    path = os.environ.get("AGENTSHARE_BIN")
    assert path, "set AGENTSHARE_BIN to the agentshare binary (tests/clients/run does)"
    return path


class ServeProcess:
    """`agentshare serve` on a fresh data dir and a port the OS picks; `name`
    goes into the data dir's name, `env` adds settings (such as
    AGENTSHARE_HTTP__ALLOWED_ORIGINS). Returns once the server and every
    service of SERVICES report SERVING; a server that does not is stopped
    and its last lines raised."""

    def __init__(self, binary, name, env=None):
        self.binary = binary
        self.lines = []
        self.external = bool(EXTERNAL_GATEWAY)
        if self.external:
            assert not env, "a running gateway cannot take other settings; start one with them"
            assert os.environ.get("AGENTSHARE_KEYS_DIR"), (
                "AGENTSHARE_GATEWAY needs AGENTSHARE_KEYS_DIR, the keys dir of that topology"
            )
            self.data_dir = None
            self.process = None
            self.address = EXTERNAL_GATEWAY
            self.connect()
            self._wait_serving()
            return
        self.data_dir = tempfile.mkdtemp(prefix=f"agentshare-{name}-")
        environment = dict(os.environ, AGENTSHARE_SHUTDOWN_DELAY_MILLIS="0")
        environment.update(env or {})
        self.process = subprocess.Popen(
            [binary, "serve", "--data-dir", self.data_dir, "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        self._lines = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()
        try:
            self.address = self._address()
            self.connect()
            self._wait_serving()
        except BaseException:
            self.stop()
            raise

    def connect(self):
        """Called once `self.address` is known, before the health checks."""

    def serving(self, service):
        """Whether grpc.health.v1.Health/Check answers SERVING for `service`
        ("" for the server); False while the server cannot be reached."""
        raise NotImplementedError

    def _drain(self):
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))
            self._lines.put(line)
        self._lines.put(None)

    def _address(self):
        deadline = time.monotonic() + START_WITHIN_SECS
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(
                    f"agentshare serve exited with {self.process.wait()} before serving:\n"
                    + self.log()
                )
            match = SERVING_LINE.search(line)
            if match:
                return match.group(1)
        raise AssertionError(f"no serving line within {START_WITHIN_SECS} s:\n" + self.log())

    def _wait_serving(self):
        deadline = time.monotonic() + START_WITHIN_SECS
        for service in [""] + SERVICES:
            while not self.serving(service):
                if time.monotonic() > deadline:
                    raise AssertionError(f"{service or 'the server'} not SERVING:\n" + self.log())
                time.sleep(0.02)

    def email(self, email):
        """The address a user signs in with: `email` itself, or on a running
        gateway, tagged with this run (`bob@example.com` → `bob-<tag>@example.com`)."""
        if not self.external:
            return email
        local, _, domain = email.partition("@")
        return f"{local}-{RUN_TAG}@{domain}"

    def token(self, user, email, step_up=False):
        """A session JWT minted by `agentshare token` for this data dir (or
        the running gateway's keys dir, for this run's tagged user); each
        one is a new session (its own `sid`)."""
        if self.external:
            # AGENTSHARE_KEYS_DIR comes from the environment.
            args = [self.binary, "token", "--user", f"{user}-{RUN_TAG}", "--email", self.email(email)]
        else:
            args = [self.binary, "token", "--data-dir", self.data_dir, "--user", user, "--email", email]
        if step_up:
            args.append("--step-up")
        return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()

    def log(self):
        """The server's last 200 lines of stderr."""
        if self.external:
            return f"(the gateway at {self.address} runs elsewhere; see its logs, e.g. target/local/logs)"
        return "\n".join(self.lines[-200:])

    def stop(self):
        if self.external:
            return
        self.process.kill()
        self.process.wait(timeout=10)
        shutil.rmtree(self.data_dir, ignore_errors=True)
