"""Fault tests against the running local topology (deploy/local/up), under
a steady mixed load through the gateway. Run by deploy/local/faults, which
puts grpcio and the Python client generated from proto/ on the path.

The load: WORKERS users, each with an org of their own, an agent with an
every-minute automation they subscribe to, and a loop of calls that touches
every service: WorkspaceWrite (store; a new key each time), GetMe
(sharing), Invoke (gateway -> sharing, registry, store), CreateAgent
(registry), ListMySubscriptions (scheduler), WorkspaceRead (store). No call
is retried, so every failure is seen.

The faults, in turn, each followed by a check that every acknowledged write
(store items, created agents) is present:

1. SIGKILL one replica of sharing, store and scheduler (the scheduler's
   just after a minute boundary, while automations fire), then start it again:
   only calls in flight on the killed replica may fail, and only with
   UNAVAILABLE; calls that start after the kill succeed.
2. SIGTERM one process of each binary (sharing, store, scheduler, registry,
   gateway): its health answers NOT_SERVING at once (before the shutdown
   delay ends), calls in flight finish (including a long Invoke whose tool
   calls go back through the gateway), and it exits 0 within its delay plus
   grace. Registry and gateway run one replica, so calls that start while
   they are away fail UNAVAILABLE; the replicated services lose none.
3. Restart PostgreSQL: calls during the outage fail UNAVAILABLE, never
   INTERNAL or anything else, and every service answers again without a
   restart (same pids).

At the end, each subscription's runs: one SUCCEEDED run per scheduled
minute since it was enabled, none twice (a run retried after its
claimant's lease expired is one run, attempt 2, and is reported). Whether
the runtime executed a retried run twice is not observable here: the echo
runtime keeps no record, and an external runtime would de-duplicate by run
id and attempt.

Prints each phase's calls and failures, and exits 1 naming each broken
expectation.
"""

import collections
import datetime
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentshare.gateway.v1 import invoke_pb2, invoke_pb2_grpc
from agentshare.registry.v1 import registry_pb2, registry_pb2_grpc
from agentshare.scheduler.v1 import automations_pb2, automations_pb2_grpc
from agentshare.sharing.v1 import tenancy_pb2, tenancy_pb2_grpc
from agentshare.store.v1 import workspace_store_pb2, workspace_store_pb2_grpc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STATE = os.environ.get("AGENTSHARE_LOCAL_DIR", os.path.join(ROOT, "target", "local"))
WORKERS = int(os.environ.get("AGENTSHARE_FAULTS_WORKERS", "6"))
CALL_TIMEOUT = 10
TAG = uuid.uuid4().hex[:8]
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
# A call that starts this soon after a SIGKILL counts as in flight on the
# killed replica: the gateway has not yet seen its connection close, so it
# may still send the call there.
KILL_NOTICE_SECS = 0.1

problems = []


def problem(text):
    problems.append(text)
    print(f"  PROBLEM: {text}", flush=True)


def internal_errors_in_logs(since_wall):
    """The services' logged internal errors since `since_wall` (epoch secs)."""
    found = []
    logs = os.path.join(STATE, "logs")
    for file in sorted(os.listdir(logs)):
        with open(os.path.join(logs, file), errors="replace") as f:
            for line in f:
                if " ERROR " in line and "internal error" in line:
                    stamp = line[:26]
                    try:
                        at = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f").replace(
                            tzinfo=datetime.timezone.utc
                        ).timestamp()
                    except ValueError:
                        continue
                    if at >= since_wall:
                        found.append((file, line.strip()))
    return found


def log(text):
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# --- the topology -----------------------------------------------------------


def read_env(path):
    values = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if "=" in line:
                key, value = line.split("=", 1)
                values[key] = value
    return values


class Topology:
    def __init__(self):
        self.state = read_env(os.path.join(STATE, "state.env"))
        self.gateway = self.state["AGENTSHARE_GATEWAY"]
        self.env = {}
        for file in os.listdir(os.path.join(STATE, "env")):
            self.env[file[: -len(".env")]] = read_env(os.path.join(STATE, "env", file))

    def instances(self):
        rows = {}
        with open(os.path.join(STATE, "instances")) as f:
            for line in f:
                name, service, pid, addr = line.split()
                rows[name] = (service, int(pid), addr)
        return rows

    def pid(self, name):
        return self.instances()[name][1]

    def addr(self, name):
        return self.instances()[name][2]

    def exit_status(self, name):
        try:
            with open(os.path.join(STATE, "exit", name)) as f:
                return f.read().strip()
        except FileNotFoundError:
            return None

    def grace_secs(self, name):
        env = self.env[name]
        return int(env["AGENTSHARE_SHUTDOWN_DELAY_MILLIS"]) / 1000 + int(
            env["AGENTSHARE_SHUTDOWN_GRACE_SECS"]
        )

    def delay_secs(self, name):
        return int(self.env[name]["AGENTSHARE_SHUTDOWN_DELAY_MILLIS"]) / 1000

    def start(self, name):
        subprocess.run(
            [os.path.join(ROOT, "deploy", "local", "instance"), name],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        wait_serving(self.addr(name), within=30)


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def health(addr, service="", timeout=0.5):
    """The health status name of `service` at `addr`, or the error's code."""
    with grpc.insecure_channel(addr) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as e:
            return e.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)


def wait_serving(addr, service="", within=30):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if health(addr, service) == "SERVING":
            return True
        time.sleep(0.05)
    problem(f"{addr} {service or '(server)'} not SERVING within {within} s")
    return False


# --- callers ----------------------------------------------------------------


def token(user):
    binary = os.environ["AGENTSHARE_BIN"]
    return subprocess.run(
        [binary, "token", "--user", user, "--email", f"{user}@example.com"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


class Caller:
    def __init__(self, channel, user):
        self.metadata = (("authorization", f"Bearer {token(user)}"),)
        self.tenancy = tenancy_pb2_grpc.TenancyServiceStub(channel)
        self.registry = registry_pb2_grpc.AgentRegistryServiceStub(channel)
        self.store = workspace_store_pb2_grpc.WorkspaceStoreServiceStub(channel)
        self.automations = automations_pb2_grpc.AutomationsServiceStub(channel)
        self.invoke = invoke_pb2_grpc.InvokeServiceStub(channel)

    def call(self, method, request, timeout=CALL_TIMEOUT):
        return method(request, metadata=self.metadata, timeout=timeout)


def every_minute():
    return registry_pb2.Automation(
        key="tick",
        display_name="Every minute",
        schedule=registry_pb2.Schedule(cron=registry_pb2.CronSchedule(expression="* * * * *")),
        time_zone="UTC",
        task="tick",
        suggested_channels=[registry_pb2.NOTIFICATION_CHANNEL_WEB],
    )


def retrying(what, fn, within=30):
    """Setup and checks retry UNAVAILABLE (as clients may); the load never does."""
    deadline = time.monotonic() + within
    while True:
        try:
            return fn()
        except grpc.RpcError as e:
            if e.code() != UNAVAILABLE or time.monotonic() > deadline:
                raise AssertionError(f"{what}: {e.code().name}: {e.details()}") from e
            time.sleep(0.2)


# --- the load ---------------------------------------------------------------

Call = collections.namedtuple("Call", "start end op code details worker")


class Worker(threading.Thread):
    OPS = ["write", "me", "invoke", "read", "subs", "write", "create_agent", "me"]

    def __init__(self, index, channel, records, lock):
        super().__init__(daemon=True)
        self.index = index
        self.user = f"faults-{TAG}-w{index}"
        self.caller = Caller(channel, self.user)
        self.records = records
        self.lock = lock
        self.stop_flag = threading.Event()
        self.paused = threading.Event()
        self.acked_keys = []
        self.acked_agents = []
        self.n = 0

    def setup(self):
        c = self.caller
        retrying("CreateOrg", lambda: c.call(c.tenancy.CreateOrg, tenancy_pb2.CreateOrgRequest(name=f"Faults {self.index}")))
        agent = retrying(
            "CreateAgent",
            lambda: c.call(
                c.registry.CreateAgent,
                registry_pb2.CreateAgentRequest(
                    draft=registry_pb2.AgentDraft(
                        name="Ticker", instructions="Say tick.", automations=[every_minute()]
                    )
                ),
            ),
        ).agent
        self.agent_id = agent.id
        retrying(
            "DeployAgent",
            lambda: c.call(
                c.registry.DeployAgent,
                registry_pb2.DeployAgentRequest(agent_id=agent.id, expected_draft_revision=agent.draft_revision),
            ),
        )
        self.subscribed_at = time.time()
        sub = retrying(
            "Subscribe",
            lambda: c.call(
                c.automations.Subscribe,
                automations_pb2.SubscribeRequest(
                    agent_id=agent.id,
                    automation_key="tick",
                    enabled=True,
                    channels=[automations_pb2.NOTIFICATION_CHANNEL_WEB],
                ),
            ),
        ).subscription
        self.subscription_id = sub.id

    def run(self):
        while not self.stop_flag.is_set():
            if self.paused.is_set():
                time.sleep(0.01)
                continue
            op = self.OPS[self.n % len(self.OPS)]
            self.n += 1
            self.one(op)
            time.sleep(0.02)

    def one(self, op):
        c = self.caller
        key = f"w{self.n:06d}"
        start = time.monotonic()
        code, details = "OK", ""
        try:
            if op == "write":
                c.call(
                    c.store.WorkspaceWrite,
                    workspace_store_pb2.WorkspaceWriteRequest(agent_id=self.agent_id, key=key, value=str(self.n)),
                )
                self.acked_keys.append(key)
            elif op == "read" and self.acked_keys:
                c.call(
                    c.store.WorkspaceRead,
                    workspace_store_pb2.WorkspaceReadRequest(agent_id=self.agent_id, key=self.acked_keys[-1]),
                )
            elif op == "me":
                c.call(c.tenancy.GetMe, tenancy_pb2.GetMeRequest())
            elif op == "invoke":
                c.call(c.invoke.Invoke, invoke_pb2.InvokeRequest(agent_id=self.agent_id, input=f"hello {self.n}"))
            elif op == "subs":
                c.call(c.automations.ListMySubscriptions, automations_pb2.ListMySubscriptionsRequest())
            elif op == "create_agent":
                agent = c.call(
                    c.registry.CreateAgent,
                    registry_pb2.CreateAgentRequest(draft=registry_pb2.AgentDraft(name=f"Load {self.n}")),
                ).agent
                self.acked_agents.append(agent.id)
        except grpc.RpcError as e:
            code, details = e.code().name, e.details()
        end = time.monotonic()
        with self.lock:
            self.records.append(Call(start, end, op, code, details, self.index))


class Load:
    def __init__(self, channel):
        self.records = []
        self.lock = threading.Lock()
        self.workers = [Worker(i, channel, self.records, self.lock) for i in range(WORKERS)]
        for w in self.workers:
            w.setup()

    def start(self):
        for w in self.workers:
            w.start()

    def stop(self):
        for w in self.workers:
            w.stop_flag.set()
        for w in self.workers:
            w.join(timeout=CALL_TIMEOUT + 5)

    def since(self, t0, t1=None):
        with self.lock:
            return [r for r in self.records if r.start >= t0 and (t1 is None or r.start <= t1)]

    def overlapping(self, t0, t1):
        """Calls that were running at some point in [t0, t1]."""
        with self.lock:
            return [r for r in self.records if r.start <= t1 and r.end >= t0]


def summary(calls):
    by = collections.Counter((r.op, r.code) for r in calls)
    failed = [r for r in calls if r.code != "OK"]
    codes = collections.Counter(r.code for r in failed)
    return f"{len(calls)} calls, {len(failed)} failed {dict(codes) if codes else ''}".rstrip(), failed, by


def show_failures(failed, t0, limit=8):
    for r in failed[:limit]:
        print(
            f"    {r.op:<12} started {r.start - t0:+.3f}s, took {r.end - r.start:.3f}s: {r.code}: {r.details[:160]}",
            flush=True,
        )
    if len(failed) > limit:
        print(f"    ... and {len(failed) - limit} more", flush=True)


# --- checks -----------------------------------------------------------------


def check_acknowledged(load, after):
    """Every acknowledged store write and created agent is there."""
    missing_keys = missing_agents = 0
    for w in load.workers:
        c = w.caller
        # What was acknowledged before the listing starts; later writes may
        # or may not be in it.
        acked_keys, acked_agents = list(w.acked_keys), list(w.acked_agents)
        keys = set()
        token_ = ""
        while True:
            page = retrying(
                "WorkspaceList",
                lambda: c.call(
                    c.store.WorkspaceList,
                    workspace_store_pb2.WorkspaceListRequest(agent_id=w.agent_id, key_prefix="w", page_size=500, page_token=token_),
                ),
            )
            keys.update(i.key for i in page.items)
            token_ = page.next_page_token
            if not token_:
                break
        lost = [k for k in acked_keys if k not in keys]
        missing_keys += len(lost)
        agents = set()
        token_ = ""
        while True:
            page = retrying(
                "ListAgents",
                lambda: c.call(
                    c.registry.ListAgents,
                    registry_pb2.ListAgentsRequest(owned_by_caller=True, page_size=200, page_token=token_),
                ),
            )
            agents.update(a.id for a in page.agents)
            token_ = page.next_page_token
            if not token_:
                break
        lost_agents = [a for a in acked_agents if a not in agents]
        missing_agents += len(lost_agents)
        if lost or lost_agents:
            problem(f"after {after}: worker {w.index} lost acknowledged writes: keys {lost[:5]}, agents {lost_agents[:5]}")
    total_keys = sum(len(w.acked_keys) for w in load.workers)
    total_agents = sum(len(w.acked_agents) for w in load.workers)
    log(
        f"  acknowledged writes after {after}: {total_keys - missing_keys}/{total_keys} store items "
        f"and {total_agents - missing_agents}/{total_agents} agents present"
    )


def check_automations(load, end_time):
    """One SUCCEEDED run per minute boundary from subscription to end_time,
    none twice, none retried."""
    for w in load.workers:
        c = w.caller
        runs = []
        token_ = ""
        while True:
            page = retrying(
                "ListRuns",
                lambda: c.call(
                    c.automations.ListRuns,
                    automations_pb2.ListRunsRequest(agent_id=w.agent_id, page_size=200, page_token=token_),
                ),
            )
            runs.extend(page.runs)
            token_ = page.next_page_token
            if not token_:
                break
        times = collections.Counter(r.scheduled_time.seconds for r in runs)
        twice = [t for t, n in times.items() if n > 1]
        first = (int(w.subscribed_at) // 60 + 1) * 60
        expected = set(range(first, int(end_time) + 1, 60))
        missing = sorted(expected - set(times))
        statuses = collections.Counter(automations_pb2.AutomationRunStatus.Name(r.status) for r in runs)
        retried = [r for r in runs if r.attempt != 1 or r.retried_after_lease_expiry]
        log(
            f"  worker {w.index}: {len(runs)} automation runs for {len(expected)} minute boundaries, "
            f"{dict(statuses)}"
        )
        fmt = lambda ts: [datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%H:%M") for t in ts]  # noqa: E731
        if twice:
            problem(f"worker {w.index}: scheduled times fired twice: {fmt(twice)}")
        if missing:
            problem(f"worker {w.index}: scheduled times never fired: {fmt(missing)}")
        for r in retried:
            log(
                f"  worker {w.index}: the run at {fmt([r.scheduled_time.seconds])[0]} is attempt {r.attempt}"
                f" ({r.note or 'retried after lease expiry'}): its first claimant was killed"
            )
        bad = [r for r in runs if r.status != automations_pb2.AUTOMATION_RUN_STATUS_SUCCEEDED]
        for r in bad:
            problem(
                f"worker {w.index}: run at {fmt([r.scheduled_time.seconds])} is "
                f"{automations_pb2.AutomationRunStatus.Name(r.status)}: {r.error.code} {r.error.message}"
            )


# --- the faults -------------------------------------------------------------


def sigkill_phase(topo, load, name):
    log(f"SIGKILL {name} (pid {topo.pid(name)})")
    pid = topo.pid(name)
    t_kill = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    time.sleep(3)
    t_restart = time.monotonic()
    topo.start(name)
    log(f"  started again as pid {topo.pid(name)} in {time.monotonic() - t_restart:.1f} s")
    time.sleep(2)
    t_end = time.monotonic()
    calls = load.overlapping(t_kill, t_end)
    text, failed, _ = summary(calls)
    log(f"  {text}")
    show_failures(failed, t_kill)
    for r in failed:
        if r.code != "UNAVAILABLE":
            in_flight = r.start <= t_kill + KILL_NOTICE_SECS and r.end >= t_kill
            problem(
                f"SIGKILL {name}: {r.op} (in flight: {in_flight}, started {r.start - t_kill:+.3f}s, "
                f"took {r.end - r.start:.3f}s) failed {r.code}, not UNAVAILABLE: {r.details}"
            )
    after = [r for r in failed if r.start > t_kill + KILL_NOTICE_SECS]
    if after:
        problem(
            f"SIGKILL {name}: {len(after)} calls that started after the kill failed "
            f"(first {after[0].op} at +{after[0].start - t_kill:.3f}s: {after[0].code}: {after[0].details})"
        )
    check_acknowledged(load, f"SIGKILL {name}")


def long_invoke(caller, agent_id, results):
    """An Invoke whose run makes 60 workspace tool calls through the gateway."""
    script = "long run\n" + "\n".join(
        f'/workspace_write {{"key":"long-{TAG}-{i}","value":"{i}"}}' for i in range(60)
    )
    start = time.monotonic()
    try:
        answer = caller.call(caller.invoke.Invoke, invoke_pb2.InvokeRequest(agent_id=agent_id, input=script), timeout=60)
        ok = sum(1 for t in answer.tool_calls if t.succeeded)
        failed = [t.result_summary for t in answer.tool_calls if not t.succeeded]
        text = f"{ok}/{len(answer.tool_calls)} tool calls succeeded"
        if failed:
            lines = [l for l in answer.output_text.splitlines() if l.startswith("workspace_write") and "wrote" not in l]
            text += f"; the first failed one: {(lines[0] if lines else failed[0])!r}"
        results.append(("OK", text, time.monotonic() - start))
    except grpc.RpcError as e:
        results.append((e.code().name, e.details(), time.monotonic() - start))


def sigterm_phase(topo, load, name, replicated):
    pid = topo.pid(name)
    addr = topo.addr(name)
    log(f"SIGTERM {name} (pid {pid})")
    worker = load.workers[0]
    results = []
    slow = threading.Thread(target=long_invoke, args=(worker.caller, worker.agent_id, results))
    slow.start()
    time.sleep(0.15)
    t_term = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    # Readiness: NOT_SERVING at once, while it still accepts.
    not_serving_after = None
    while time.monotonic() - t_term < topo.delay_secs(name):
        status = health(addr, timeout=0.2)
        if status == "NOT_SERVING":
            not_serving_after = time.monotonic() - t_term
            break
        time.sleep(0.01)
    if not_serving_after is None:
        problem(f"SIGTERM {name}: health did not answer NOT_SERVING within the shutdown delay ({topo.delay_secs(name)} s)")
    else:
        log(f"  NOT_SERVING after {not_serving_after * 1000:.0f} ms")
    grace = topo.grace_secs(name)
    while alive(pid) and time.monotonic() - t_term < grace + 2:
        time.sleep(0.02)
    exited_after = time.monotonic() - t_term
    time.sleep(0.3)
    status = topo.exit_status(name)
    if alive(pid):
        problem(f"SIGTERM {name}: still running {grace + 2:.1f} s after SIGTERM")
        os.kill(pid, signal.SIGKILL)
    elif status != "0":
        problem(f"SIGTERM {name}: exited with {status}, not 0")
    elif exited_after > grace:
        problem(f"SIGTERM {name}: exited after {exited_after:.1f} s, beyond its delay plus grace ({grace} s)")
    else:
        log(f"  exited 0 after {exited_after:.2f} s (delay plus grace {grace} s)")
    slow.join(timeout=60)
    code, details, took = results[0] if results else ("NONE", "no answer", 0)
    log(f"  the long Invoke in flight: {code} after {took:.2f} s: {details[:200]}")
    if code != "OK" or not details.startswith("60/60"):
        problem(f"SIGTERM {name}: the Invoke in flight at SIGTERM did not finish cleanly: {code}: {details[:300]}")
    t_restart = time.monotonic()
    topo.start(name)
    if name.startswith("gateway"):
        for service in PUBLIC_SERVICES:
            wait_serving(topo.gateway, service)
    log(f"  started again as pid {topo.pid(name)} in {time.monotonic() - t_restart:.1f} s")
    time.sleep(1.5)
    t_end = time.monotonic()
    calls = load.overlapping(t_term, t_end)
    text, failed, _ = summary(calls)
    log(f"  {text}")
    show_failures(failed, t_term)
    in_flight = [r for r in failed if r.start <= t_term]
    if in_flight:
        problem(f"SIGTERM {name}: {len(in_flight)} calls in flight at SIGTERM failed (first {in_flight[0].op}: {in_flight[0].code}: {in_flight[0].details})")
    for r in failed:
        if r.code != "UNAVAILABLE":
            problem(f"SIGTERM {name}: {r.op} failed {r.code}, not UNAVAILABLE: {r.details}")
    if replicated and failed:
        problem(f"SIGTERM {name}: {len(failed)} calls failed though another replica serves")
    check_acknowledged(load, f"SIGTERM {name}")


PUBLIC_SERVICES = [
    "agentshare.sharing.v1.TenancyService",
    "agentshare.registry.v1.AgentRegistryService",
    "agentshare.store.v1.WorkspaceStoreService",
    "agentshare.scheduler.v1.AutomationsService",
    "agentshare.gateway.v1.InvokeService",
]


def postgres_phase(topo, load):
    pids = {name: row[1] for name, row in topo.instances().items()}
    wall0 = time.time()
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    log(f"restart PostgreSQL {version}")
    t0 = time.monotonic()
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
    )
    t_up = time.monotonic()
    log(f"  PostgreSQL back after {t_up - t0:.1f} s")
    # Every kind of call succeeds again, without restarting anything.
    recovered = None
    deadline = t_up + 30
    while time.monotonic() < deadline:
        time.sleep(0.5)
        recent = load.since(time.monotonic() - 1.0)
        ops_ok = {r.op for r in recent if r.code == "OK"}
        if recent and all(r.code == "OK" for r in recent) and {"write", "me", "invoke", "subs", "create_agent"} <= ops_ok:
            recovered = time.monotonic() - t_up
            break
    if recovered is None:
        problem("PostgreSQL restart: calls still fail 30 s after PostgreSQL is back")
    else:
        log(f"  every kind of call succeeds again {recovered:.1f} s after PostgreSQL is back")
    time.sleep(2)
    t_end = time.monotonic()
    calls = load.overlapping(t0, t_end)
    text, failed, _ = summary(calls)
    log(f"  {text}")
    by_code = collections.defaultdict(list)
    for r in failed:
        by_code[r.code].append(r)
    for code, rows in by_code.items():
        print(f"   {code}:", flush=True)
        show_failures(rows, t0, limit=5)
        if code != "UNAVAILABLE":
            ops = collections.Counter(r.op for r in rows)
            logged = internal_errors_in_logs(wall0 - 1)
            for file, line in logged[:5]:
                print(f"    {file}: {line[:600]}", flush=True)
            problem(
                f"PostgreSQL restart: {len(rows)} calls failed {code}, not UNAVAILABLE ({dict(ops)}); "
                f"first: {rows[0].op}: {rows[0].details}"
            )
    now = {name: row[1] for name, row in topo.instances().items()}
    for name, pid in pids.items():
        if not alive(pid) or now[name] != pid:
            problem(f"PostgreSQL restart: {name} (pid {pid}) did not survive it")
        elif health(topo.addr(name)) != "SERVING":
            problem(f"PostgreSQL restart: {name} is {health(topo.addr(name))}")
    check_acknowledged(load, "the PostgreSQL restart")


def main():
    started = time.monotonic()
    topo = Topology()
    log(f"fault tests against the gateway at {topo.gateway}, {WORKERS} workers, tag {TAG}")
    channel = grpc.insecure_channel(topo.gateway)
    load = Load(channel)
    load.start()
    time.sleep(3)
    text, failed, _ = summary(load.since(0))
    log(f"steady load: {text}")
    show_failures(failed, started)
    if failed:
        problem(f"{len(failed)} calls failed before any fault")

    for name in ["sharing-1", "store-1"]:
        sigkill_phase(topo, load, name)
    for name, replicated in [
        ("sharing-2", True),
        ("store-2", True),
        ("scheduler-2", True),
        ("registry-1", False),
        ("gateway-1", False),
    ]:
        sigterm_phase(topo, load, name, replicated)
    # A scheduler replica killed just after a minute boundary, while the
    # replicas claim and run that minute's automations.
    now = time.time()
    wait = 60 - now % 60 + 0.3
    log(f"waiting {wait:.0f} s for the next minute boundary")
    time.sleep(wait)
    sigkill_phase(topo, load, "scheduler-1")
    postgres_phase(topo, load)

    # Automations: at least two minute boundaries since the subscriptions
    # (one of them the scheduler kill's), and 5 s past the last, so each
    # run has fired.
    first = min((int(w.subscribed_at) // 60 + 1) * 60 for w in load.workers)
    end_time = max(int(time.time() // 60) * 60, first + 60)
    if time.time() < end_time + 5:
        log(f"waiting {end_time + 5 - time.time():.0f} s for a second minute boundary of automations")
        time.sleep(end_time + 5 - time.time())
    load.stop()
    text, _, by = summary(load.records)
    log(f"all phases: {text}")
    log("automations (every minute, one subscription per worker):")
    check_automations(load, end_time)
    channel.close()
    log(f"fault tests took {time.monotonic() - started:.0f} s")
    if problems:
        print(f"\n{len(problems)} problems:", flush=True)
        for p in problems:
            print(f"  - {p}", flush=True)
        sys.exit(1)
    print("no problems", flush=True)


if __name__ == "__main__":
    main()
