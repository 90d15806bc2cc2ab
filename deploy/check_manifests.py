#!/usr/bin/env python3
"""Checks the rendered Kubernetes manifests against the rules of deploy/README.md.

kubernetes-validate says whether each object is a valid Kubernetes object;
this says whether the set of them is a sound deployment of agentshare:

    check_manifests.py --prod PROD.yaml --dev DEV.yaml [--job JOB.yaml ...] [--self-test]

Every failure names the rendering, the object and the rule, one per line:

    FAIL prod Deployment/agentshare-registry [replicas]: 1 replica; prod runs at least 2

and the exit code is 1. --self-test then breaks the prod rendering in a
dozen ways, one at a time, and fails unless each break is caught by the
rule meant to catch it, so a rule that silently stopped matching anything
is found too. deploy/validate runs both.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import urllib.parse

import yaml

# The services, each its own binary, Deployment and Service in prod.
SERVICES = ["gateway", "registry", "sharing", "store", "scheduler"]
# The services with a database (the gateway has none).
DB_SERVICES = ["registry", "sharing", "store", "scheduler"]
# Who calls whom, read from the code: the peers.<service> each one dials
# (kit::server::channel in each crate's start, kit::events::follow). The
# gateway calls itself: the echo runtime's workspace tools go through
# gateway_address.
CALLS = {
    "gateway": ["sharing", "registry", "store", "scheduler", "gateway"],
    "registry": ["sharing"],
    "sharing": ["registry", "store", "scheduler"],
    "store": ["sharing", "registry"],
    "scheduler": ["registry", "sharing", "gateway"],
}
BIN_DIR = "/usr/local/bin"
# The code's defaults (README, Configuration), for a setting left unset.
DEFAULTS = {
    "AGENTSHARE_SHUTDOWN_DELAY_MILLIS": "500",
    "AGENTSHARE_SHUTDOWN_GRACE_SECS": "30",
    "AGENTSHARE_LISTEN": "127.0.0.1:50051",
    "AGENTSHARE_DATA_DIR": "./agentshare-data",
}
POSTGRES_PORT = 5432
DNS_PORT = 53


class Checker:
    def __init__(self, rendering: str, objects: list[dict]):
        self.rendering = rendering
        self.objects = [o for o in objects if isinstance(o, dict)]
        self.failures: list[tuple[str, str, str]] = []
        namespaces = [o for o in self.objects if o.get("kind") == "Namespace"]
        self.namespace = namespaces[0]["metadata"]["name"] if namespaces else ""

    # ---- helpers -------------------------------------------------------

    def fail(self, obj: dict | str, rule: str, message: str) -> None:
        name = obj if isinstance(obj, str) else f"{obj['kind']}/{obj['metadata']['name']}"
        self.failures.append((name, rule, message))

    def of_kind(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o.get("kind") == kind]

    def named(self, kind: str, name: str) -> dict | None:
        for o in self.of_kind(kind):
            if o["metadata"]["name"] == name:
                return o
        return None

    def workloads(self) -> list[dict]:
        return [o for o in self.objects if o.get("kind") in ("Deployment", "Job")]

    @staticmethod
    def pod_spec(workload: dict) -> dict:
        return workload["spec"]["template"]["spec"]

    @staticmethod
    def pod_labels(workload: dict) -> dict:
        return workload["spec"]["template"].get("metadata", {}).get("labels", {}) or {}

    def env(self, workload: dict, container: dict) -> dict[str, object]:
        """The container's environment as the process sees it: envFrom in
        order, then env. A value from a Secret is a ("secret", name, key)
        tuple; a whole Secret in envFrom is listed under its name."""
        result: dict[str, object] = {}
        for source in container.get("envFrom", []) or []:
            if "configMapRef" in source:
                cm = self.named("ConfigMap", source["configMapRef"]["name"])
                if cm is None:
                    self.fail(
                        workload,
                        "config",
                        f"envFrom names ConfigMap {source['configMapRef']['name']}, which is not rendered",
                    )
                    continue
                for k, v in (cm.get("data") or {}).items():
                    result[(source.get("prefix") or "") + k] = v
            elif "secretRef" in source:
                result.setdefault("__secrets__", []).append(source["secretRef"]["name"])  # type: ignore[union-attr]
        for var in container.get("env", []) or []:
            if "value" in var:
                result[var["name"]] = var["value"]
            elif "valueFrom" in var and "secretKeyRef" in var["valueFrom"]:
                ref = var["valueFrom"]["secretKeyRef"]
                result[var["name"]] = ("secret", ref["name"], ref["key"])
            else:
                result[var["name"]] = ("other",)
        return result

    @staticmethod
    def setting(env: dict, name: str) -> str:
        value = env.get(name, DEFAULTS.get(name, ""))
        return value if isinstance(value, str) else ""

    @staticmethod
    def binary(container: dict) -> tuple[str, list[str]]:
        argv = list(container.get("command") or []) + list(container.get("args") or [])
        if not argv:
            return "", []
        return os.path.basename(argv[0]), argv[1:]

    def service_of(self, deployment: dict) -> str | None:
        name, _ = self.binary(self.pod_spec(deployment)["containers"][0])
        if name.startswith("agentshare-") and name[len("agentshare-") :] in SERVICES:
            return name[len("agentshare-") :]
        return None

    # ---- label selectors -------------------------------------------------

    @staticmethod
    def selects(selector: dict | None, labels: dict) -> bool:
        if selector is None:
            return False
        for k, v in (selector.get("matchLabels") or {}).items():
            if labels.get(k) != v:
                return False
        for expr in selector.get("matchExpressions") or []:
            key, op, values = expr["key"], expr["operator"], expr.get("values") or []
            if op == "In" and labels.get(key) not in values:
                return False
            if op == "NotIn" and labels.get(key) in values:
                return False
            if op == "Exists" and key not in labels:
                return False
            if op == "DoesNotExist" and key in labels:
                return False
        return True

    # ---- rules for every rendering ----------------------------------------

    def check_common(self) -> None:
        for w in self.workloads():
            spec = self.pod_spec(w)
            pod_sc = spec.get("securityContext") or {}
            if spec.get("automountServiceAccountToken") is not False:
                self.fail(
                    w,
                    "security-context",
                    "automountServiceAccountToken must be false: no workload talks to the Kubernetes API",
                )
            if pod_sc.get("runAsNonRoot") is not True:
                self.fail(w, "security-context", "pod securityContext.runAsNonRoot must be true")
            if pod_sc.get("runAsUser") == 0:
                self.fail(w, "security-context", "pod securityContext.runAsUser must not be 0")
            containers = (spec.get("initContainers") or []) + spec["containers"]
            for c in containers:
                where = f"container {c['name']}"
                sc = c.get("securityContext") or {}
                seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get(
                    "type"
                )
                if seccomp != "RuntimeDefault":
                    self.fail(
                        w,
                        "security-context",
                        f"{where}: seccompProfile must be RuntimeDefault (pod or container), is {seccomp}",
                    )
                if sc.get("allowPrivilegeEscalation") is not False:
                    self.fail(
                        w, "security-context", f"{where}: allowPrivilegeEscalation must be false"
                    )
                if sc.get("readOnlyRootFilesystem") is not True:
                    self.fail(
                        w, "security-context", f"{where}: readOnlyRootFilesystem must be true"
                    )
                if sc.get("privileged") is True:
                    self.fail(w, "security-context", f"{where}: must not be privileged")
                caps = sc.get("capabilities") or {}
                if "ALL" not in (caps.get("drop") or []):
                    self.fail(w, "security-context", f"{where}: capabilities.drop must include ALL")
                if caps.get("add"):
                    self.fail(w, "security-context", f"{where}: adds capabilities {caps['add']}")
                if sc.get("runAsNonRoot") is False:
                    self.fail(w, "security-context", f"{where}: runAsNonRoot is false")
                res = c.get("resources") or {}
                for part in ("requests", "limits"):
                    for resource in ("cpu", "memory"):
                        if resource not in (res.get(part) or {}):
                            self.fail(w, "resources", f"{where}: no {part}.{resource}")
                image = c.get("image", "")
                tag = image.rsplit("/", 1)[-1].partition(":")[2]
                if "@" not in image and tag in ("", "latest"):
                    self.fail(
                        w,
                        "image",
                        f"{where}: image {image!r} needs a fixed tag or digest (the overlay's images: entry)",
                    )
        for d in self.of_kind("Deployment"):
            self.check_deployment(d)

    def check_deployment(self, d: dict) -> None:
        spec = self.pod_spec(d)
        for c in spec["containers"]:
            where = f"container {c['name']}"
            ports = {p["containerPort"] for p in c.get("ports") or []}
            for kind in ("livenessProbe", "readinessProbe"):
                probe = c.get(kind) or {}
                grpc = probe.get("grpc")
                if not grpc or "port" not in grpc:
                    self.fail(d, "probes", f"{where}: no {kind} of type grpc (grpc.health.v1)")
                elif grpc["port"] not in ports:
                    self.fail(
                        d,
                        "probes",
                        f"{where}: {kind} probes port {grpc['port']}, which the container does not expose ({sorted(ports)})",
                    )
                elif grpc.get("service"):
                    self.fail(
                        d,
                        "probes",
                        f"{where}: {kind} asks for service {grpc['service']!r}; the overall status is service \"\"",
                    )
            env = self.env(d, c)
            listen = self.setting(env, "AGENTSHARE_LISTEN")
            host, _, port = listen.rpartition(":")
            if host not in ("0.0.0.0", "[::]") or not port.isdigit() or int(port) not in ports:
                self.fail(
                    d,
                    "listen",
                    f"{where}: AGENTSHARE_LISTEN is {listen!r}; it must be 0.0.0.0:<a container port> so probes and peers reach it",
                )
            delay_ms, grace_s = (
                self.setting(env, "AGENTSHARE_SHUTDOWN_DELAY_MILLIS"),
                self.setting(env, "AGENTSHARE_SHUTDOWN_GRACE_SECS"),
            )
            try:
                delay, grace = int(delay_ms) / 1000, int(grace_s)
            except ValueError:
                self.fail(
                    d,
                    "termination-grace",
                    f"{where}: shutdown settings are not numbers ({delay_ms!r}, {grace_s!r})",
                )
                continue
            binary, args = self.binary(c)
            # `serve` stops the gateway (delay, drain) and then each of the
            # four services in turn (each its own delay).
            stops = 5 if binary == "agentshare" and args[:1] == ["serve"] else 1
            budget = stops * delay + grace
            period = spec.get("terminationGracePeriodSeconds", 30)
            if not period > budget:
                self.fail(
                    d,
                    "termination-grace",
                    f"terminationGracePeriodSeconds {period} is not above {stops} x shutdown_delay ({delay:g} s) + shutdown_grace ({grace} s) = {budget:g} s",
                )

    # ---- prod --------------------------------------------------------------

    def check_prod(self) -> None:
        self.check_common()
        deployments = {}
        for d in self.of_kind("Deployment"):
            service = self.service_of(d)
            if service is None:
                self.fail(
                    d,
                    "services",
                    "runs none of the service binaries "
                    + ", ".join(f"{BIN_DIR}/agentshare-{s}" for s in SERVICES),
                )
                continue
            if service in deployments:
                self.fail(d, "services", f"a second Deployment of {service}")
            deployments[service] = d
        for service in SERVICES:
            if service not in deployments:
                self.fail(
                    f"Deployment/agentshare-{service}",
                    "services",
                    f"no Deployment runs {BIN_DIR}/agentshare-{service}",
                )
        hpas = self.of_kind("HorizontalPodAutoscaler")
        for service, d in deployments.items():
            self.check_replicas(d, hpas)
            self.check_pdb(d)
            self.check_service(service, d)
            self.check_secrets(service, d)
        gateway = deployments.get("gateway")
        if gateway is not None and not any(
            h["spec"]["scaleTargetRef"].get("kind") == "Deployment"
            and h["spec"]["scaleTargetRef"]["name"] == gateway["metadata"]["name"]
            for h in hpas
        ):
            self.fail(gateway, "hpa", "no HorizontalPodAutoscaler scales the gateway")
        for h in hpas:
            if h["spec"].get("minReplicas", 1) < 2:
                self.fail(h, "hpa", f"minReplicas {h['spec'].get('minReplicas', 1)}; at least 2")
        self.check_peers(deployments)
        self.check_migrations(deployments)
        self.check_network_policies(deployments)

    def check_replicas(self, d: dict, hpas: list[dict]) -> None:
        replicas = d["spec"].get("replicas")
        if replicas is None:
            hpa = [h for h in hpas if h["spec"]["scaleTargetRef"]["name"] == d["metadata"]["name"]]
            if not hpa:
                self.fail(
                    d, "replicas", "no replicas and no HorizontalPodAutoscaler: it would run 1"
                )
            elif min(h["spec"].get("minReplicas", 1) for h in hpa) < 2:
                self.fail(d, "replicas", "its HorizontalPodAutoscaler may scale it below 2")
        elif replicas < 2:
            self.fail(d, "replicas", f"{replicas} replica; prod runs at least 2")

    def check_pdb(self, d: dict) -> None:
        labels = self.pod_labels(d)
        pdbs = [
            p
            for p in self.of_kind("PodDisruptionBudget")
            if self.selects(p["spec"].get("selector"), labels)
        ]
        if len(pdbs) != 1:
            self.fail(
                d, "pdb", f"{len(pdbs)} PodDisruptionBudgets select its pods; it needs exactly 1"
            )

    def check_service(self, service: str, d: dict) -> None:
        labels = self.pod_labels(d)
        c = self.pod_spec(d)["containers"][0]
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
        svcs = [
            s
            for s in self.of_kind("Service")
            if s["spec"].get("selector")
            and self.selects({"matchLabels": s["spec"]["selector"]}, labels)
        ]
        if len(svcs) != 1:
            self.fail(d, "service", f"{len(svcs)} Services select its pods; it needs exactly 1")
            return
        for p in svcs[0]["spec"]["ports"]:
            target = p.get("targetPort", p["port"])
            if (ports.get(target) if isinstance(target, str) else target) not in ports.values():
                self.fail(
                    svcs[0],
                    "service",
                    f"port {p['port']} targets {target!r}, which the {service} container does not expose",
                )

    def peer_url(self, service: str) -> str | None:
        d = None
        for dep in self.of_kind("Deployment"):
            if self.service_of(dep) == service:
                d = dep
        if d is None:
            return None
        labels = self.pod_labels(d)
        for s in self.of_kind("Service"):
            if s["spec"].get("selector") and self.selects(
                {"matchLabels": s["spec"]["selector"]}, labels
            ):
                return f"http://{s['metadata']['name']}:{s['spec']['ports'][0]['port']}"
        return None

    def check_peers(self, deployments: dict) -> None:
        for service, d in deployments.items():
            c = self.pod_spec(d)["containers"][0]
            env = self.env(d, c)
            for peer in CALLS[service]:
                var = f"AGENTSHARE_PEERS__{peer.upper()}"
                want = self.peer_url(peer)
                have = env.get(var)
                if have is None:
                    self.fail(d, "peers", f"{service} calls {peer}, but {var} is not set")
                elif want is not None and not self.same_service(str(have), want):
                    self.fail(d, "peers", f"{var} is {have!r}; {peer}'s Service is {want}")
            if service == "gateway" and "AGENTSHARE_GATEWAY_ADDRESS" not in env:
                self.fail(
                    d,
                    "peers",
                    "AGENTSHARE_GATEWAY_ADDRESS is not set: a runtime would be told the pod's 0.0.0.0 address",
                )

    def same_service(self, url: str, want: str) -> bool:
        """Whether url names the Service want names: its short name or any
        longer form of it in this namespace."""
        have, ok = urllib.parse.urlsplit(url), urllib.parse.urlsplit(want)
        names = {
            ok.hostname,
            f"{ok.hostname}.{self.namespace}",
            f"{ok.hostname}.{self.namespace}.svc",
            f"{ok.hostname}.{self.namespace}.svc.cluster.local",
        }
        return have.scheme == ok.scheme and have.port == ok.port and have.hostname in names

    def check_secrets(self, service: str, d: dict) -> None:
        spec = self.pod_spec(d)
        c = spec["containers"][0]
        env = self.env(d, c)
        for cm in self.of_kind("ConfigMap"):
            for k in cm.get("data") or {}:
                if (
                    k == "AGENTSHARE_DATABASE_URL"
                    or "SECRET_KEYS" in k
                    or k.endswith("CLIENT_SECRET")
                ):
                    self.fail(
                        cm,
                        "database-secret" if "DATABASE" in k else "connections",
                        f"{k} is a secret and must come from a Secret, not a ConfigMap",
                    )
        url = env.get("AGENTSHARE_DATABASE_URL")
        if service in DB_SERVICES:
            if not (isinstance(url, tuple) and url[0] == "secret"):
                self.fail(
                    d,
                    "database-secret",
                    "AGENTSHARE_DATABASE_URL must come from a Secret (secretKeyRef)",
                )
        elif url is not None:
            self.fail(
                d, "database-secret", f"{service} has no database but sets AGENTSHARE_DATABASE_URL"
            )
        # keys_dir: a mounted volume of Secrets holding <service>.key and
        # every <service>.pub, and no other service's private key.
        keys_dir = self.setting(env, "AGENTSHARE_KEYS_DIR")
        mounts = {m["mountPath"].rstrip("/"): m["name"] for m in c.get("volumeMounts") or []}
        volume_name = mounts.get(keys_dir.rstrip("/"))
        volume = next((v for v in spec.get("volumes") or [] if v["name"] == volume_name), None)
        if not keys_dir or volume is None:
            self.fail(d, "keys", f"AGENTSHARE_KEYS_DIR ({keys_dir!r}) is not a mounted volume")
        else:
            files = self.secret_files(d, volume)
            if files is not None:
                want = {f"{service}.key"} | {f"{s}.pub" for s in SERVICES}
                missing = want - files
                if missing:
                    self.fail(d, "keys", f"keys_dir lacks {sorted(missing)}")
                extra = {f for f in files if f.endswith(".key") and f != f"{service}.key"}
                if extra:
                    self.fail(
                        d, "keys", f"keys_dir holds other services' private keys {sorted(extra)}"
                    )
        if service == "sharing":
            has = any(
                k.startswith("AGENTSHARE_CONNECTIONS__")
                and isinstance(v, tuple)
                and v[0] == "secret"
                for k, v in env.items()
            )
            if not (env.get("__secrets__") or has):
                self.fail(
                    d,
                    "connections",
                    "sharing takes no connection-sealing keys from a Secret (AGENTSHARE_CONNECTIONS__SECRET_KEYS__<ID>, ..._ACTIVE_SECRET_KEY)",
                )
        if service == "gateway":
            jwks = self.setting(env, "AGENTSHARE_AUTH__JWKS_FILE")
            directory, _, file = jwks.rpartition("/")
            volume_name = mounts.get(directory)
            volume = next((v for v in spec.get("volumes") or [] if v["name"] == volume_name), None)
            if not jwks or volume is None:
                self.fail(
                    d, "jwks", f"AGENTSHARE_AUTH__JWKS_FILE ({jwks!r}) is not in a mounted volume"
                )
            else:
                files = self.secret_files(d, volume)
                if files is not None and file not in files:
                    self.fail(d, "jwks", f"the volume at {directory} holds no {file}")

    def secret_files(self, d: dict, volume: dict) -> set[str] | None:
        """The file names a secret or projected-secret volume holds, or None
        (after a failure) when it is not made of Secrets or lists no items."""
        sources = []
        if "secret" in volume:
            sources = [volume["secret"]]
        elif "projected" in volume:
            for s in volume["projected"]["sources"]:
                if "secret" not in s:
                    self.fail(
                        d,
                        "keys",
                        f"volume {volume['name']} mixes in a non-Secret source {sorted(s)}",
                    )
                    return None
                sources.append(s["secret"])
        else:
            self.fail(d, "keys", f"volume {volume['name']} is not made of Secrets")
            return None
        files = set()
        for s in sources:
            if not s.get("items"):
                self.fail(
                    d,
                    "keys",
                    f"volume {volume['name']} mounts all of Secret {s.get('secretName') or s.get('name')}; list its items, so a missing file stops the pod and no extra one appears",
                )
                return None
            files |= {i["path"] for i in s["items"]}
        return files

    def check_migrations(self, deployments: dict) -> None:
        for service in DB_SERVICES:
            d = deployments.get(service)
            if d is None:
                continue
            db = self.env(d, self.pod_spec(d)["containers"][0]).get("AGENTSHARE_DATABASE_URL")
            found = False
            for job in self.of_kind("Job"):
                c = self.pod_spec(job)["containers"][0]
                binary, args = self.binary(c)
                if binary == f"agentshare-{service}" and "--migrate-only" in args:
                    found = True
                    if self.env(job, c).get("AGENTSHARE_DATABASE_URL") != db:
                        self.fail(
                            job,
                            "migration-job",
                            f"migrates another database than the {service} Deployment's",
                        )
                    if self.pod_spec(job).get("restartPolicy") not in ("Never", "OnFailure"):
                        self.fail(job, "migration-job", "restartPolicy must be Never or OnFailure")
            if not found:
                self.fail(
                    f"Job/agentshare-{service}-migrate",
                    "migration-job",
                    f"no Job runs {BIN_DIR}/agentshare-{service} --migrate-only",
                )

    # ---- network policies ----------------------------------------------------

    @staticmethod
    def policy_types(policy: dict) -> list[str]:
        # Kubernetes' default: Ingress, and Egress if it has egress rules.
        spec = policy["spec"]
        return spec.get("policyTypes") or ["Ingress"] + (["Egress"] if "egress" in spec else [])

    def policies(self, labels: dict, direction: str) -> list[dict]:
        return [
            p
            for p in self.of_kind("NetworkPolicy")
            if self.selects(p["spec"].get("podSelector") or {}, labels)
            and direction in self.policy_types(p)
        ]

    @staticmethod
    def port_allowed(rule: dict, port: int, protocol: str, port_names: dict) -> bool:
        ports = rule.get("ports")
        if not ports:
            return True
        for p in ports:
            if p.get("protocol", "TCP") != protocol:
                continue
            value = p.get("port")
            if value is None:
                return True
            if isinstance(value, str):
                value = port_names.get(value)
            end = p.get("endPort", value)
            if value is not None and value <= port <= end:
                return True
        return False

    def peer_admits_pod(self, peer: dict, labels: dict) -> bool:
        if "ipBlock" in peer:
            return True  # a pod address is an address
        if "namespaceSelector" in peer:
            # Our own namespace carries kubernetes.io/metadata.name.
            ns = {"kubernetes.io/metadata.name": self.namespace}
            if not self.selects(peer["namespaceSelector"], ns):
                return False
        return self.selects(peer.get("podSelector") or {}, labels)

    @staticmethod
    def peer_is_outside(peer: dict) -> bool:
        return "ipBlock" in peer or "namespaceSelector" in peer

    def allows(self, src: dict, dst: dict, port: int, protocol: str = "TCP") -> tuple[bool, bool]:
        """(egress of src allows it, ingress of dst allows it)."""
        src_labels, dst_labels = self.pod_labels(src), self.pod_labels(dst)
        names = {
            p.get("name"): p["containerPort"]
            for c in self.pod_spec(dst)["containers"]
            for p in c.get("ports") or []
        }
        out_ok = any(
            self.port_allowed(r, port, protocol, names)
            and (not r.get("to") or any(self.peer_admits_pod(p, dst_labels) for p in r["to"]))
            for pol in self.policies(src_labels, "Egress")
            for r in pol["spec"].get("egress") or []
        ) or not self.policies(src_labels, "Egress")
        in_ok = any(
            self.port_allowed(r, port, protocol, names)
            and (not r.get("from") or any(self.peer_admits_pod(p, src_labels) for p in r["from"]))
            for pol in self.policies(dst_labels, "Ingress")
            for r in pol["spec"].get("ingress") or []
        ) or not self.policies(dst_labels, "Ingress")
        return out_ok, in_ok

    def egress_to_port(self, w: dict, port: int, protocol: str) -> bool:
        return any(
            self.port_allowed(r, port, protocol, {})
            for pol in self.policies(self.pod_labels(w), "Egress")
            for r in pol["spec"].get("egress") or []
        )

    def check_network_policies(self, deployments: dict) -> None:
        for w in self.workloads():
            labels = self.pod_labels(w)
            for direction in ("Ingress", "Egress"):
                if not self.policies(labels, direction):
                    self.fail(
                        w,
                        "network-policy",
                        f"no NetworkPolicy restricts its {direction.lower()} (a default deny selects every pod)",
                    )
            if not self.egress_to_port(w, DNS_PORT, "UDP"):
                self.fail(w, "network-policy", "no egress to DNS (53/UDP)")
            env = self.env(w, self.pod_spec(w)["containers"][0])
            if "AGENTSHARE_DATABASE_URL" in env and not self.egress_to_port(
                w, POSTGRES_PORT, "TCP"
            ):
                self.fail(
                    w,
                    "network-policy",
                    f"has a database but no egress to PostgreSQL ({POSTGRES_PORT}/TCP)",
                )
        for service, d in deployments.items():
            labels = self.pod_labels(d)
            for pol in self.policies(labels, "Ingress"):
                for rule in pol["spec"].get("ingress") or []:
                    peers = rule.get("from")
                    outside = not peers or any(self.peer_is_outside(p) for p in peers)
                    if outside and service != "gateway":
                        self.fail(
                            pol,
                            "network-policy",
                            f"lets traffic from outside the namespace's agentshare pods into {service}; only the gateway takes ingress from outside",
                        )
                    if peers and service != "gateway":
                        for p in peers:
                            others = [
                                w
                                for w in self.workloads()
                                if self.peer_admits_pod(p, self.pod_labels(w))
                                and not (
                                    w["kind"] == "Deployment" and self.service_of(w) in SERVICES
                                )
                            ]
                            if others:
                                self.fail(
                                    pol,
                                    "network-policy",
                                    f"lets {', '.join(o['kind'] + '/' + o['metadata']['name'] for o in others)} into {service}; services accept only the gateway and each other",
                                )
        for caller, callees in CALLS.items():
            for callee in callees:
                src, dst = deployments.get(caller), deployments.get(callee)
                if src is None or dst is None:
                    continue
                port = self.pod_spec(dst)["containers"][0]["ports"][0]["containerPort"]
                out_ok, in_ok = self.allows(src, dst, port)
                if not out_ok:
                    self.fail(
                        src,
                        "network-policy",
                        f"{caller} calls {callee} on {port}, but no egress rule of {caller} allows it",
                    )
                if not in_ok:
                    self.fail(
                        dst,
                        "network-policy",
                        f"{caller} calls {callee} on {port}, but no ingress rule of {callee} allows it",
                    )

    # ---- dev -----------------------------------------------------------------

    def check_dev(self) -> None:
        self.check_common()
        serve = []
        for d in self.of_kind("Deployment"):
            binary, args = self.binary(self.pod_spec(d)["containers"][0])
            if binary == "agentshare" and args[:1] == ["serve"]:
                serve.append(d)
        if len(serve) != 1:
            self.fail(
                "Deployment/agentshare",
                "dev-serve",
                f"{len(serve)} Deployments run `agentshare serve`; dev runs exactly 1",
            )
            return
        d = serve[0]
        if d["spec"].get("replicas", 1) != 1:
            self.fail(d, "dev-serve", "SQLite on one volume: exactly 1 replica")
        if (d["spec"].get("strategy") or {}).get("type") != "Recreate":
            self.fail(
                d,
                "dev-serve",
                "strategy must be Recreate: the old pod must let go of the SQLite files first",
            )
        c = self.pod_spec(d)["containers"][0]
        env = self.env(d, c)
        data_dir = self.setting(env, "AGENTSHARE_DATA_DIR").rstrip("/")
        mounts = {m["mountPath"].rstrip("/"): m["name"] for m in c.get("volumeMounts") or []}
        volume = next(
            (v for v in self.pod_spec(d).get("volumes") or [] if v["name"] == mounts.get(data_dir)),
            None,
        )
        if volume is None or "persistentVolumeClaim" not in volume:
            self.fail(
                d, "dev-serve", f"the data dir {data_dir!r} is not a mounted PersistentVolumeClaim"
            )
        elif (
            self.named("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
            is None
        ):
            self.fail(
                d,
                "dev-serve",
                f"PersistentVolumeClaim {volume['persistentVolumeClaim']['claimName']} is not rendered",
            )
        labels = self.pod_labels(d)
        if not any(
            s["spec"].get("selector")
            and self.selects({"matchLabels": s["spec"]["selector"]}, labels)
            for s in self.of_kind("Service")
        ):
            self.fail(d, "dev-serve", "no Service selects the serve pod")

    # ---- one-off jobs ----------------------------------------------------------

    def check_jobs(self) -> None:
        self.check_common()
        jobs = self.of_kind("Job")
        if not jobs:
            self.fail(self.rendering, "jobs", "renders no Job")
        for job in jobs:
            c = self.pod_spec(job)["containers"][0]
            url = self.env(job, c).get("AGENTSHARE_DATABASE_URL")
            if not (isinstance(url, tuple) and url[0] == "secret"):
                self.fail(
                    job,
                    "database-secret",
                    "AGENTSHARE_DATABASE_URL must come from a Secret (secretKeyRef)",
                )


def load(path: str) -> list[dict]:
    with open(path) as f:
        return [o for o in yaml.safe_load_all(f) if o]


def run(rendering: str, objects: list[dict]) -> list[tuple[str, str, str]]:
    checker = Checker(rendering, objects)
    {"prod": checker.check_prod, "dev": checker.check_dev}.get(rendering, checker.check_jobs)()
    return checker.failures


# Each break of the prod rendering, and the (object, rule) that must catch it.
def self_tests():
    def obj(objects, kind, name):
        return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)

    def container(objects, name):
        return obj(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]

    def drop(objects, kind, name):
        objects.remove(obj(objects, kind, name))

    def set_(path_fn, key, value):
        def apply(objects):
            path_fn(objects)[key] = value

        return apply

    def delete(path_fn, key):
        def apply(objects):
            del path_fn(objects)[key]

        return apply

    def open_registry(objects):
        obj(objects, "NetworkPolicy", "agentshare-registry-ingress")["spec"]["ingress"].append(
            {"ports": [{"port": 50051}]}
        )

    def cut_scheduler_to_gateway(objects):
        rule = obj(objects, "NetworkPolicy", "agentshare-scheduler-egress")["spec"]["egress"][0]
        rule["to"] = [
            p
            for p in rule["to"]
            if p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] != "gateway"
        ]

    def leak_gateway_key(objects):
        volume = obj(objects, "Deployment", "agentshare-sharing")["spec"]["template"]["spec"][
            "volumes"
        ][0]
        volume["projected"]["sources"].append(
            {
                "secret": {
                    "name": "agentshare-gateway-key",
                    "items": [{"key": "gateway.key", "path": "gateway.key"}],
                }
            }
        )

    def literal_db(objects):
        for var in container(objects, "agentshare-store")["env"]:
            if var["name"] == "AGENTSHARE_DATABASE_URL":
                var.pop("valueFrom")
                var["value"] = "postgres://store:hunter2@db/store"

    def root_scheduler(objects):
        container(objects, "agentshare-scheduler")["securityContext"][
            "readOnlyRootFilesystem"
        ] = False

    def migrate_in_registry(objects):
        obj(objects, "NetworkPolicy", "agentshare-registry-ingress")["spec"]["ingress"][0][
            "from"
        ].append({"podSelector": {"matchLabels": {"app.kubernetes.io/component": "migrate"}}})

    return [
        (
            "registry at 1 replica",
            set_(lambda o: obj(o, "Deployment", "agentshare-registry")["spec"], "replicas", 1),
            "Deployment/agentshare-registry",
            "replicas",
        ),
        (
            "store without readiness probe",
            delete(lambda o: container(o, "agentshare-store"), "readinessProbe"),
            "Deployment/agentshare-store",
            "probes",
        ),
        (
            "sharing without limits",
            delete(lambda o: container(o, "agentshare-sharing")["resources"], "limits"),
            "Deployment/agentshare-sharing",
            "resources",
        ),
        (
            "scheduler with a writable root",
            root_scheduler,
            "Deployment/agentshare-scheduler",
            "security-context",
        ),
        (
            "gateway killed after 30 s",
            set_(
                lambda o: obj(o, "Deployment", "agentshare-gateway")["spec"]["template"]["spec"],
                "terminationGracePeriodSeconds",
                30,
            ),
            "Deployment/agentshare-gateway",
            "termination-grace",
        ),
        (
            "no PodDisruptionBudget for store",
            lambda o: drop(o, "PodDisruptionBudget", "agentshare-store"),
            "Deployment/agentshare-store",
            "pdb",
        ),
        (
            "no HorizontalPodAutoscaler",
            lambda o: drop(o, "HorizontalPodAutoscaler", "agentshare-gateway"),
            "Deployment/agentshare-gateway",
            "hpa",
        ),
        (
            "registry open to the world",
            open_registry,
            "NetworkPolicy/agentshare-registry-ingress",
            "network-policy",
        ),
        (
            "a migration Job let into registry",
            migrate_in_registry,
            "NetworkPolicy/agentshare-registry-ingress",
            "network-policy",
        ),
        (
            "scheduler cannot reach the gateway",
            cut_scheduler_to_gateway,
            "Deployment/agentshare-scheduler",
            "network-policy",
        ),
        (
            "no migration Job for the scheduler",
            lambda o: drop(o, "Job", "agentshare-scheduler-migrate"),
            "Job/agentshare-scheduler-migrate",
            "migration-job",
        ),
        (
            "sharing holds the gateway's key",
            leak_gateway_key,
            "Deployment/agentshare-sharing",
            "keys",
        ),
        (
            "store's database URL in plain text",
            literal_db,
            "Deployment/agentshare-store",
            "database-secret",
        ),
    ]


def self_test(objects: list[dict]) -> int:
    failed = 0
    for what, apply, target, rule in self_tests():
        broken = copy.deepcopy(objects)
        apply(broken)
        caught = [f for f in run("prod", broken) if f[0] == target and f[1] == rule]
        if caught:
            print(f"self-test ok: {what}: caught as {target} [{rule}]")
        else:
            print(f"self-test FAIL: {what}: expected {target} [{rule}], got {run('prod', broken)}")
            failed += 1
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prod", required=True, help="kubectl kustomize deploy/k8s/overlays/prod")
    parser.add_argument("--dev", required=True, help="kubectl kustomize deploy/k8s/overlays/dev")
    parser.add_argument(
        "--job", action="append", default=[], help="a rendering of one-off Jobs (deploy/k8s/ops/*)"
    )
    parser.add_argument(
        "--self-test", action="store_true", help="also check that each rule catches a break"
    )
    args = parser.parse_args()

    renderings = [("prod", args.prod), ("dev", args.dev)] + [
        (f"job:{os.path.splitext(os.path.basename(p))[0]}", p) for p in args.job
    ]
    total = 0
    for rendering, path in renderings:
        objects = load(path)
        failures = run(
            rendering.split(":")[0] if rendering.startswith("job") else rendering, objects
        )
        for name, rule, message in failures:
            print(f"FAIL {rendering} {name} [{rule}]: {message}")
        print(f"check_manifests: {rendering}: {len(objects)} objects, {len(failures)} failures")
        total += len(failures)
    if args.self_test:
        broken = self_test(load(args.prod))
        print(
            f"check_manifests: self-test: {len(self_tests()) - broken} of {len(self_tests())} breaks caught"
        )
        total += broken
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
