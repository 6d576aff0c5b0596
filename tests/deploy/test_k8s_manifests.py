"""The Kubernetes manifests under deploy/k8s, without a cluster.

Every document is validated against the Kubernetes JSON schemas that `kubernetes-validate`
ships (strict: an unknown field is an error, as with kubectl's server-side field validation)
and the KEDA resources against `schemas/keda-v1alpha1.json`. Then the files are checked
against what they name: commands against the real CLI, environment against `config.py`,
Secret and ConfigMap references against the objects, the autoscaler against the worker
Deployment and against the Redis list Dramatiq fills.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from referencing import Registry, Resource

from tests.test_deploy import cli_invocation, exec_form, only, settings_variables, stages
from zapvet.config import load_settings
from zapvet.llm.openai import build_chat_model
from zapvet.queue.actors import declare
from zapvet.queue.broker import build_broker

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
KEDA_SCHEMA = Path(__file__).resolve().parent / "schemas" / "keda-v1alpha1.json"
#: The oldest Kubernetes still in wide use and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.30.0", "1.37.0")
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
EXAMPLE_SECRET = "secret.example.yaml"
PLACEHOLDER = "change-me"
EXAMPLE_HOST = "redis.example.internal"
WORKLOAD_KINDS = {"Deployment", "Job"}


# -- loading and validating ----------------------------------------------------------------


def load_documents(directory: Path) -> list[tuple[str, dict[str, Any]]]:
    """(file name, document) for every YAML document under `directory`."""
    found = []
    for path in sorted(directory.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert isinstance(document, dict), f"{path.name}: a document that is not a mapping"
            found.append((path.name, document))
    return found


@cache
def documents() -> list[tuple[str, dict[str, Any]]]:
    return load_documents(K8S)


def resources() -> list[dict[str, Any]]:
    """The cluster objects: every document but kustomize's own."""
    return [doc for _, doc in documents() if doc["kind"] != "Kustomization"]


def find(kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in resources() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def label(document: dict[str, Any]) -> str:
    return f"{document['kind']}/{document['metadata']['name']}"


@cache
def keda_validators() -> dict[str, jsonschema.Draft202012Validator]:
    """A validator per KEDA kind; Kubernetes types resolve to the strict definitions."""
    schema = json.loads(KEDA_SCHEMA.read_text())
    newest = f"v{K8S_VERSIONS[-1]}-local-strict"
    definitions = json.loads(
        files("kubernetes_validate")
        .joinpath("kubernetes-json-schema", newest, "_definitions.json")
        .read_text()
    )
    registry: Registry[Any] = Registry().with_resources(
        [
            (schema["$id"], Resource.from_contents(schema)),
            (definitions["$id"], Resource.from_contents(definitions)),
        ]
    )
    return {
        kind: jsonschema.Draft202012Validator(
            {"$ref": f"{schema['$id']}#/$defs/{kind}"}, registry=registry
        )
        for kind in KEDA_KINDS
    }


def validate(document: dict[str, Any], version: str) -> None:
    """Raise `jsonschema.ValidationError` unless `document` fits its kind's schema."""
    if document["kind"] in KEDA_KINDS:
        keda_validators()[document["kind"]].validate(document)
    else:
        kubernetes_validate.validate(document, version, strict=True)


def kustomization() -> dict[str, Any]:
    found = [doc for name, doc in documents() if name == "kustomization.yaml"]
    assert len(found) == 1
    return found[0]


# -- workloads -----------------------------------------------------------------------------


def workloads() -> list[dict[str, Any]]:
    return [d for d in resources() if d["kind"] in WORKLOAD_KINDS]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, container) for every container, init containers included."""
    for workload in workloads():
        spec = pod_spec(workload)
        for container in spec.get("initContainers", []) + spec["containers"]:
            yield workload, container


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The environment the container gets, Secret values from the example Secret."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(find("ConfigMap", source["configMapRef"]["name"])["data"])
        if "secretRef" in source:
            env.update(find("Secret", source["secretRef"]["name"])["stringData"])
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        elif "secretKeyRef" in variable["valueFrom"]:
            ref = variable["valueFrom"]["secretKeyRef"]
            env[variable["name"]] = find("Secret", ref["name"])["stringData"][ref["key"]]
        elif "configMapKeyRef" in variable["valueFrom"]:
            ref = variable["valueFrom"]["configMapKeyRef"]
            env[variable["name"]] = find("ConfigMap", ref["name"])["data"][ref["key"]]
    return env


def component(workload: dict[str, Any]) -> str:
    value: str = workload["metadata"]["labels"]["app.kubernetes.io/component"]
    return value


def the_container(name: str) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod_spec(find("Deployment", f"zapvet-{name}"))["containers"]
    assert len(containers) == 1
    return containers[0]


# -- schemas -------------------------------------------------------------------------------


def test_manifests_exist_for_every_process() -> None:
    kinds = {label(d) for d in resources()}
    assert {
        "ConfigMap/zapvet-config",
        "Secret/zapvet-secrets",
        "Job/zapvet-migrate",
        "Deployment/zapvet-bridge",
        "Service/zapvet-bridge",
        "Deployment/zapvet-worker",
        "Deployment/zapvet-scheduler",
        "ScaledObject/zapvet-worker",
        "TriggerAuthentication/zapvet-keda-redis",
    } <= kinds


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_fits_its_schema(version: str) -> None:
    for name, document in documents():
        if document["kind"] == "Kustomization":
            continue
        try:
            validate(document, version)
        except jsonschema.ValidationError as exc:
            pytest.fail(f"{name} {label(document)} on {version}: {exc.message} at {exc.json_path}")


def edit(document: dict[str, Any], path: list[str | int], value: Any) -> None:
    for key in path[:-1]:
        document = document[key]  # type: ignore[index]
    document[path[-1]] = value  # type: ignore[index]


BROKEN = [
    # a typo in a field name: kubectl's strict validation refuses it, so must the test
    ("worker.yaml", 0, ["spec", "template", "spec", "containers", 0, "imagePullPolcy"], "Always"),
    ("bridge.yaml", 0, ["spec", "template", "spec", "terminationGracePeriod"], 30),
    ("keda.yaml", 0, ["spec", "triggers", 0, "metdata"], {"listName": "x"}),
    ("keda.yaml", 0, ["spec", "advanced", "horizontalPodAutoscalerConfig", "behaviour"], {}),
    ("keda.yaml", 1, ["spec", "secretTargetRef", 0, "secret"], "zapvet"),
    # a value of the wrong type
    ("keda.yaml", 0, ["spec", "maxReplicaCount"], "6"),
    ("keda.yaml", 0, ["spec", "triggers", 0, "metadata", "listLength"], 20),
    ("scheduler.yaml", 0, ["spec", "replicas"], "1"),
]


@pytest.mark.parametrize(("file", "index", "path", "value"), BROKEN)
def test_a_broken_copy_is_rejected(
    tmp_path: Path, file: str, index: int, path: list[str | int], value: Any
) -> None:
    original = list(yaml.safe_load_all((K8S / file).read_text()))
    broken = copy.deepcopy(original)
    edit(broken[index], path, value)
    (tmp_path / file).write_text(yaml.safe_dump_all(broken))
    loaded = [doc for _, doc in load_documents(tmp_path)]
    assert loaded == broken and loaded != original
    for version in K8S_VERSIONS:
        validate(original[index], version)  # the file as committed passes...
        with pytest.raises(jsonschema.ValidationError):  # ...and the one edit breaks it
            validate(loaded[index], version)


# -- kustomize and the example Secret ------------------------------------------------------


def test_kustomization_applies_every_manifest_but_the_example_secret() -> None:
    listed = set(kustomization()["resources"])
    on_disk = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - {EXAMPLE_SECRET}
    images = {image["name"] for image in kustomization()["images"]}
    assert images == {container["image"] for _, container in containers()} == {"zapvet"}


def test_example_secrets_hold_only_placeholders() -> None:
    secrets = [doc for name, doc in documents() if doc["kind"] == "Secret"]
    assert secrets and all(name == EXAMPLE_SECRET for name, doc in documents() if doc in secrets)
    for secret in secrets:
        assert "data" not in secret, "base64 hides what is committed: use stringData"
        for key, value in secret["stringData"].items():
            # Credentials say change-me; an address alone points at an example host.
            placeholder = PLACEHOLDER in value or value.startswith(f"{EXAMPLE_HOST}:")
            assert placeholder, f"{label(secret)} {key} is not a placeholder"
            if "://" in value:
                assert urlsplit(value).password == PLACEHOLDER, f"{label(secret)} {key}"


# -- environment ---------------------------------------------------------------------------


def test_configmap_names_only_settings_zapvet_reads() -> None:
    keys = set(find("ConfigMap", "zapvet-config")["data"])
    assert keys and keys <= settings_variables(), keys - settings_variables()
    secret_keys = set(find("Secret", "zapvet-secrets")["stringData"])
    assert secret_keys <= settings_variables(), secret_keys - settings_variables()
    assert not keys & secret_keys


def test_every_reference_to_a_configmap_or_secret_resolves() -> None:
    references = 0
    for workload, container in containers():
        where = f"{label(workload)} {container['name']}"
        for source in container.get("envFrom", []):
            (kind, ref), *_ = source.items()
            find({"configMapRef": "ConfigMap", "secretRef": "Secret"}[kind], ref["name"])
            references += 1
        for variable in container.get("env", []):
            assert variable["name"] in settings_variables(), f"{where}: {variable['name']}"
            if "valueFrom" not in variable:
                continue
            (kind, ref), *_ = variable["valueFrom"].items()
            target = find(
                {"secretKeyRef": "Secret", "configMapKeyRef": "ConfigMap"}[kind], ref["name"]
            )
            assert ref["key"] in target.get("stringData", target.get("data", {})), where
            references += 1
    assert references >= 3 * len(workloads())


def test_only_the_worker_gets_the_model_key() -> None:
    for workload, container in containers():
        has_key = "OPENAI_API_KEY" in container_env(container)
        assert has_key == (component(workload) == "worker"), label(workload)


@pytest.mark.parametrize("name", ["migrate", "bridge", "worker", "scheduler"])
def test_each_container_environment_is_valid_settings(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (workload,) = [w for w in workloads() if component(w) == name]
    (container,) = pod_spec(workload)["containers"]
    monkeypatch.chdir(tmp_path)  # no developer's .env
    for variable in settings_variables():
        monkeypatch.delenv(variable, raising=False)
    for key, value in container_env(container).items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    # Both servers named: the command must never fall back to embedded ones in a pod.
    assert settings.database_url and settings.redis_url
    assert settings.effective_log_format == "json"
    if name == "worker":
        build_chat_model(settings)  # what the worker checks before it starts


# -- commands and pods ---------------------------------------------------------------------


def test_containers_run_real_zapvet_commands() -> None:
    entrypoint = exec_form(only("ENTRYPOINT", stages()[-1]))
    assert entrypoint == ["zapvet"]
    commands = {}
    for workload, container in containers():
        assert "command" not in container, "the image's ENTRYPOINT is zapvet: pass args only"
        path, params = cli_invocation(container["args"])
        commands[component(workload)] = (path, params)
    assert {c: path for c, (path, _) in commands.items()} == {
        "migrate": "db upgrade",
        "bridge": "bridge",
        "worker": "worker",
        "scheduler": "scheduler",
    }


def test_pods_run_locked_down_as_the_image_user() -> None:
    user = only("USER", stages()[-1]).args  # "10001:10001"
    uid, gid = (int(part) for part in user.split(":"))
    for workload, container in containers():
        spec = pod_spec(workload)
        where = f"{label(workload)} {container['name']}"
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, where
        assert (pod["runAsUser"], pod["runAsGroup"]) == (uid, gid), where
        assert spec["automountServiceAccountToken"] is False, where
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, where
        assert security["readOnlyRootFilesystem"] is True, where
        assert security["capabilities"]["drop"] == ["ALL"], where
        # A read-only root needs somewhere to write temporary files.
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], where
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), where
        assert "memory" in resources["limits"], where


def test_bridge_probes_its_health_routes_on_its_port() -> None:
    container = the_container("bridge")
    _, params = cli_invocation(container["args"])
    (port,) = container["ports"]
    assert port["containerPort"] == params["port"] and params["host"] == "0.0.0.0"
    probes = {kind: container[kind]["httpGet"] for kind in ("livenessProbe", "readinessProbe")}
    # Liveness must not depend on PostgreSQL or Redis: an outage would restart every bridge.
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert all(probe["port"] in (port["name"], port["containerPort"]) for probe in probes.values())
    routes = (REPO / "src" / "zapvet" / "bridge" / "app.py").read_text()
    for probe in probes.values():
        assert f'@app.get("{probe["path"]}")' in routes
    service = find("Service", "zapvet-bridge")
    labels = find("Deployment", "zapvet-bridge")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [port["name"]]


def test_worker_outlives_its_shutdown_timeout() -> None:
    worker = find("Deployment", "zapvet-worker")
    _, params = cli_invocation(the_container("worker")["args"])
    assert params["processes"] == 1
    assert pod_spec(worker)["terminationGracePeriodSeconds"] > params["shutdown_timeout"]
    assert "replicas" not in worker["spec"], "KEDA owns the worker's replica count"


def test_scheduler_is_a_single_replica() -> None:
    scheduler = find("Deployment", "zapvet-scheduler")
    assert scheduler["spec"]["replicas"] == 1
    # Rolling is safe only because a second scheduler waits for the leader lock.
    source = (REPO / "src" / "zapvet" / "queue" / "scheduler.py").read_text()
    assert "pg_try_advisory_lock" in source


# -- autoscaling ---------------------------------------------------------------------------


def test_scaled_object_scales_the_worker_deployment() -> None:
    scaled = find("ScaledObject", "zapvet-worker")["spec"]
    target = scaled["scaleTargetRef"]
    assert (target.get("apiVersion", "apps/v1"), target.get("kind", "Deployment")) == (
        "apps/v1",
        "Deployment",
    )
    deployment = find("Deployment", target["name"])
    (container,) = pod_spec(deployment)["containers"]
    assert cli_invocation(container["args"])[0] == "worker"
    assert 1 <= scaled["minReplicaCount"] < scaled["maxReplicaCount"]


def test_scaled_object_watches_the_drain_actors_redis_list() -> None:
    (trigger,) = find("ScaledObject", "zapvet-worker")["spec"]["triggers"]
    assert trigger["type"] == "redis"
    broker = build_broker("redis://127.0.0.1:1")  # the production broker; it connects lazily
    queue = declare(broker, get_resources=None).drain_actor.queue_name  # type: ignore[arg-type]
    namespace = find("ConfigMap", "zapvet-config")["data"]["ZAPVET_QUEUE_NAMESPACE"]
    assert trigger["metadata"]["listName"] == f"{namespace}:{queue}"
    assert int(trigger["metadata"]["listLength"]) > 0
    # Dramatiq's RedisBroker keeps waiting ids in the list "<namespace>:<queue>"; delayed ones
    # (the drain's debounce) wait apart, in "<namespace>:<queue>.DQ".
    lua = files("dramatiq.brokers").joinpath("redis", "dispatch.lua").read_text()
    assert 'local queue_full_name = namespace .. ":" .. queue_name' in lua
    assert 'redis.call("rpush", queue_full_name, message_id)' in lua
    assert 'redis.call("lpop", queue_full_name)' in lua


def test_trigger_authentication_matches_the_queues_redis() -> None:
    (trigger,) = find("ScaledObject", "zapvet-worker")["spec"]["triggers"]
    auth = find("TriggerAuthentication", trigger["authenticationRef"]["name"])
    params = {}
    for ref in auth["spec"]["secretTargetRef"]:
        params[ref["parameter"]] = find("Secret", ref["name"])["stringData"][ref["key"]]
    assert set(params) == {"address", "password"}
    redis_url = urlsplit(find("Secret", "zapvet-secrets")["stringData"]["REDIS_URL"])
    assert params["address"] == f"{redis_url.hostname}:{redis_url.port}"
    assert params["password"] == redis_url.password
    assert trigger["metadata"]["databaseIndex"] == (redis_url.path.strip("/") or "0")
