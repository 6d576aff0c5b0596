"""The container image, compose file, Prometheus alerts and Grafana dashboard, without Docker.

Docker does not run where the tests do, so each file is checked against what it names:
commands against the real CLI, environment against `config.py`, metric names and labels
against `docs/metrics.md`, and the files against each other (ports, mounts, job names).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml
from pydantic import AliasChoices
from typer.exceptions import TyperException
from typer.testing import CliRunner

from zapvet.cli import app
from zapvet.config import Settings, load_settings
from zapvet.llm.openai import build_chat_model
from zapvet.queue.stats import FAILED_ALERT, WAITING_ALERT

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
ZAPVET_SERVICES = ("migrate", "bridge", "worker", "scheduler")
#: Labels Prometheus itself attaches, allowed on every series.
TARGET_LABELS = {"job", "instance"}
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
RATE_FUNCTIONS = {"rate", "irate", "increase"}


# -- the files ------------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def service(name: str) -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"][name]
    return found


@cache
def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((DEPLOY / "prometheus-alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


@cache
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    return loaded


def all_panels() -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # a collapsed row keeps its panels inside
    return panels


def graph_panels() -> list[dict[str, Any]]:
    return [panel for panel in all_panels() if panel["type"] != "row"]


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


@cache
def dockerfile() -> list[Instruction]:
    """Dockerfile instructions, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).strip().partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def stages() -> list[list[Instruction]]:
    found: list[list[Instruction]] = []
    for instruction in dockerfile():
        if instruction.keyword == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def exec_form(instruction: Instruction) -> list[str]:
    words = json.loads(instruction.args)
    assert isinstance(words, list) and all(isinstance(w, str) for w in words), instruction
    return words


def only(keyword: str, instructions: list[Instruction]) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
    return found[0]


# -- documented metrics ---------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str
    labels: dict[str, frozenset[str]]  # label → documented values (empty: any value)


@cache
def documented_metrics() -> dict[str, Metric]:
    """The table of docs/metrics.md: name, type, labels and their listed values."""
    metrics = {}
    row = re.compile(r"^\|\s*`(zapvet_[a-z0-9_]+)`\s*\|\s*([a-z]+)[^|]*\|([^|]*)\|")
    for line in (REPO / "docs" / "metrics.md").read_text().splitlines():
        if match := row.match(line):
            name, kind, cell = match.groups()
            labels = {
                label: frozenset(v.strip() for v in values.split(",") if values)
                for label, values in re.findall(r"`([a-z_]+)`(?:\s*\(([^)]*)\))?", cell)
            }
            metrics[name] = Metric(name, kind, labels)
    assert len(metrics) >= 10, "docs/metrics.md no longer has its table of metrics"
    return metrics


@dataclass(frozen=True)
class Selector:
    series: str  # as written, e.g. zapvet_job_duration_seconds_bucket
    metric: Metric
    matchers: list[tuple[str, str, str]]  # (label, operator, value)
    function: str  # the innermost function the selector is an argument of


def _blank_strings(expr: str) -> str:
    """`expr` with string contents blanked (same length), so label values never look like code."""
    return re.sub(
        r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'",
        lambda m: m.group()[0] + " " * (len(m.group()) - 2) + m.group()[-1],
        expr,
    )


def _enclosing_function(code: str, position: int) -> str:
    depth = 0
    for index in range(position - 1, -1, -1):
        if code[index] == ")":
            depth += 1
        elif code[index] == "(":
            if depth == 0:
                name = re.search(r"([a-z_]+)\s*$", code[:index])
                return name.group(1) if name else ""
            depth -= 1
    return ""


def selectors(expr: str) -> list[Selector]:
    """Every zapvet series an expression selects, resolved against docs/metrics.md."""
    code = _blank_strings(expr)
    assert code.count("(") == code.count(")") and code.count("{") == code.count("}"), expr
    found = []
    for match in re.finditer(r"\b(zapvet_[a-z0-9_]+)\b(?:\s*\{([^}]*)\})?", code):
        series = match.group(1)
        base = next((series.removesuffix(s) for s in HISTOGRAM_SUFFIXES if series.endswith(s)), "")
        metric = documented_metrics().get(series) or documented_metrics().get(base)
        assert metric is not None, f"{series} is not in docs/metrics.md ({expr})"
        if metric.kind == "histogram":
            assert series != metric.name, f"{series} is a histogram: use _bucket/_count/_sum"
        else:
            assert series == metric.name, f"{metric.name} is a {metric.kind}, not a histogram"
        body = expr[match.start(2) : match.end(2)] if match.group(2) is not None else ""
        matchers = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*\"([^\"]*)\"", body)
        found.append(Selector(series, metric, matchers, _enclosing_function(code, match.start())))
    return found


def check_expression(expr: str) -> set[str]:
    """Assert `expr` uses documented metrics and labels the way their types allow; the names."""
    used = set()
    for selector in selectors(expr):
        metric, series = selector.metric, selector.series
        used.add(metric.name)
        for label, operator, value in selector.matchers:
            allowed = (
                set(metric.labels)
                | TARGET_LABELS
                | ({"le"} if series.endswith("_bucket") else set())
            )
            assert label in allowed, f"{series} has no label {label!r} ({expr})"
            values = metric.labels.get(label)
            if values and operator in {"=", "!="} and not value.startswith("$"):
                assert value in values, f"{series}{{{label}}} is never {value!r} ({expr})"
        if metric.kind == "counter" or series.endswith(HISTOGRAM_SUFFIXES):
            assert selector.function in RATE_FUNCTIONS, f"{series} outside rate/increase ({expr})"
        if series.endswith("_bucket"):
            groupings = re.findall(r"\bby\s*\(([^)]*)\)", expr)
            assert "histogram_quantile(" in expr, expr
            assert any(
                "le" in [g.strip() for g in grouping.split(",")] for grouping in groupings
            ), f"histogram_quantile needs the le label kept: sum by (le, …) ({expr})"
    return used


# -- helpers --------------------------------------------------------------------------------


def seconds(duration: str | int) -> float:
    """A compose / Prometheus duration (`180s`, `1m30s`, `5m`) in seconds."""
    if isinstance(duration, int):
        return float(duration)
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"bad duration {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` against `env`."""

    def one(match: re.Match[str]) -> str:
        name, operator, word = match.group(1), match.group(2) or "", match.group(3) or ""
        current = env.get(name)
        missing = current is None or (operator.startswith(":") and not current)
        if missing and operator.endswith("?"):
            raise LookupError(f"{name}: {word}")
        if missing and operator.endswith("-"):
            return word
        return current or ""

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}", one, value)


def cli_invocation(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse `zapvet ARGV` as the CLI would; the command's path and its typed parameters.

    `--help` alone would exit 0 for a group or for an option value of the wrong type.
    """
    result = CliRunner().invoke(app, [*argv, "--help"])
    assert result.exit_code == 0, f"zapvet {shlex.join(argv)} --help: {result.output}"
    command: Any = typer.main.get_command(app)
    path, rest = [], list(argv)
    while isinstance(getattr(command, "commands", None), dict):  # a group: descend
        assert rest, f"zapvet {shlex.join(argv)} names a group, not a command"
        name = rest.pop(0)
        assert name in command.commands, f"zapvet has no command {name!r}"
        command = command.commands[name]
        path.append(name)
    try:
        context = command.make_context(" ".join(path), rest)
    except TyperException as exc:
        pytest.fail(f"zapvet {shlex.join(argv)}: {exc}")
    return " ".join(path), context.params


def settings_variables() -> set[str]:
    """Every environment variable `config.py` reads."""
    names = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, str):
            names.add(alias)
        elif isinstance(alias, AliasChoices):
            names.update(choice for choice in alias.choices if isinstance(choice, str))
    return names


def published(entry: str | dict[str, Any]) -> tuple[str, str]:
    """(host address, container port) of a compose `ports` entry."""
    if isinstance(entry, dict):
        return str(entry.get("host_ip", "0.0.0.0")), str(entry["target"])
    parts = entry.split(":")
    host_ip = parts[0] if len(parts) == 3 else "0.0.0.0"
    return host_ip, parts[-1].split("/")[0]


def bind_mounts(name: str) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service(name).get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts.append(((REPO / source).resolve(), target))
    return mounts


# -- Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_on_one_python() -> None:
    args = {
        key: value
        for i in dockerfile()
        if i.keyword == "ARG" and "=" in i.args
        for key, value in [i.args.split("=", 1)]
    }
    bases = [
        re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], stage[0].args.split()[0])
        for stage in stages()
    ]
    assert len(bases) >= 2
    # The venv is copied across stages; its interpreter is a symlink into the base image.
    assert set(bases) == {"python:3.11-slim"}


def test_dockerfile_runtime_stage_copies_only_the_venv() -> None:
    runtime = stages()[-1]
    copies = [i.args.split() for i in runtime if i.keyword in {"COPY", "ADD"}]
    assert copies, "the runtime stage copies nothing"
    for words in copies:
        assert words[0].startswith("--from="), f"runtime copies from the build context: {words}"
        assert words[1:] == ["/opt/venv", "/opt/venv"], words
    builder = "\n".join(i.args for i in stages()[0])
    assert "pip wheel" in builder and "/wheels/zapvet-" in builder


def test_dockerfile_runs_as_a_fixed_non_root_user() -> None:
    runtime = stages()[-1]
    user = only("USER", runtime).args.split(":")[0]
    assert user not in {"root", "0"}
    created = "\n".join(i.args for i in runtime if i.keyword == "RUN")
    uid = re.search(r"useradd\b.*--uid\s+(\d+).*\bzapvet\b", created)
    assert uid is not None, "the runtime stage does not create user zapvet with a fixed uid"
    assert user in {uid.group(1), "zapvet"}


def test_dockerfile_environment() -> None:
    env = {}
    for instruction in stages()[-1]:
        if instruction.keyword == "ENV":
            env.update(word.split("=", 1) for word in shlex.split(instruction.args))
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["ZAPVET_LOG_FORMAT"] == "json"
    assert env["PATH"].startswith("/opt/venv/bin:")
    zapvet_names = {name for name in env if name.startswith("ZAPVET_")}
    assert zapvet_names <= settings_variables(), zapvet_names - settings_variables()


def test_dockerfile_entrypoint_and_default_command_run_the_bridge() -> None:
    runtime = stages()[-1]
    assert exec_form(only("ENTRYPOINT", runtime)) == ["zapvet"]
    command, params = cli_invocation(exec_form(only("CMD", runtime)))
    assert command == "bridge" and params["host"] == "0.0.0.0"
    assert only("EXPOSE", runtime).args.split() == [str(params["port"])]
    assert only("STOPSIGNAL", runtime).args == "SIGTERM"


def test_dockerfile_healthcheck_calls_healthz_with_python() -> None:
    healthcheck = only("HEALTHCHECK", stages()[-1]).args
    options, _, command = healthcheck.partition("CMD ")
    check = json.loads(command)
    assert check[0] == "python", "slim images have no curl or wget"
    _, params = cli_invocation(exec_form(only("CMD", stages()[-1])))
    assert f"http://127.0.0.1:{params['port']}/healthz" in check[-1]
    assert "--timeout=" in options


def test_dockerignore_keeps_the_build_inputs_and_drops_local_state() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for local in (".venv", ".zapvet", ".git", ".env", ".pytest_cache", "build"):
        assert local in patterns, local
    sources = [
        word
        for i in dockerfile()
        if i.keyword == "COPY" and "--from=" not in i.args
        for word in shlex.split(i.args)[:-1]
    ]
    assert {"pyproject.toml", "README.md", "src"} <= set(sources)
    for source in sources:
        assert (REPO / source).exists(), source
        excluded = [p for p in patterns if fnmatch.fnmatch(source, p.removeprefix("**/"))]
        assert not excluded, f".dockerignore drops {source}, which the Dockerfile copies"


# -- docker-compose.yml ---------------------------------------------------------------------


def test_compose_zapvet_services_share_one_image() -> None:
    builds = {json.dumps(service(name).get("build"), sort_keys=True) for name in ZAPVET_SERVICES}
    images = {service(name).get("image") for name in ZAPVET_SERVICES}
    assert len(builds) == 1 and len(images) == 1, (builds, images)
    build = service("bridge")["build"]
    assert build["context"] == "."
    assert (REPO / build.get("dockerfile", "Dockerfile")).is_file()


@pytest.mark.parametrize("name", ZAPVET_SERVICES)
def test_compose_commands_are_real_cli_commands(name: str) -> None:
    command, _ = cli_invocation(service(name)["command"])
    expected = {"migrate": "db upgrade"}.get(name, name)
    assert command == expected


def test_compose_worker_outlives_its_shutdown_timeout() -> None:
    worker = service("worker")
    _, params = cli_invocation(worker["command"])
    assert "--processes" in worker["command"], "Dramatiq defaults to the host's CPU count"
    assert seconds(worker["stop_grace_period"]) > params["shutdown_timeout"]


def test_compose_redis_keeps_the_queue() -> None:
    command = service("redis")["command"]
    flags = dict(zip(command[1::2], command[2::2], strict=False))
    assert command[0] == "redis-server"
    assert flags["--appendonly"] == "yes"
    assert flags["--maxmemory-policy"] == "noeviction"


def test_compose_start_order() -> None:
    def conditions(name: str) -> dict[str, str]:
        depends = service(name).get("depends_on", {})
        if isinstance(depends, list):
            return dict.fromkeys(depends, "service_started")
        return {dep: spec["condition"] for dep, spec in depends.items()}

    assert conditions("migrate") == {"postgres": "service_healthy"}
    assert service("migrate")["restart"] == "no"
    for name in ("bridge", "worker", "scheduler"):
        assert conditions(name) == {
            "migrate": "service_completed_successfully",
            "postgres": "service_healthy",  # also makes compose stop the stores last
            "redis": "service_healthy",
        }
    for name in compose()["services"]:
        for dependency, condition in conditions(name).items():
            if condition == "service_healthy":
                assert "test" in service(dependency).get("healthcheck", {}), dependency


def test_compose_healthchecks() -> None:
    assert "pg_isready" in " ".join(service("postgres")["healthcheck"]["test"])
    assert service("redis")["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    _, params = cli_invocation(service("bridge")["command"])
    test = service("bridge")["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"]
    assert f"http://127.0.0.1:{params['port']}/readyz" in test[-1]
    for name in ("migrate", "worker", "scheduler"):  # no HTTP: the image's check would fail
        assert service(name)["healthcheck"] == {"disable": True}, name


def test_compose_publishes_only_the_webhook_beyond_loopback() -> None:
    _, params = cli_invocation(service("bridge")["command"])
    for name, spec in compose()["services"].items():
        for host_ip, port in map(published, spec.get("ports", [])):
            if name == "bridge":
                assert port == str(params["port"])
            else:
                assert host_ip == "127.0.0.1", f"{name} publishes {port} on {host_ip}"
    assert "ports" not in service("postgres") and "ports" not in service("redis")
    assert published(service("phoenix")["ports"][0]) == ("127.0.0.1", "6006")


def test_compose_phoenix_is_offline() -> None:
    phoenix = service("phoenix")
    assert phoenix["image"].startswith("arizephoenix/phoenix:")
    env = phoenix["environment"]
    assert env["PHOENIX_ALLOW_EXTERNAL_RESOURCES"] == "false"
    assert env["PHOENIX_TELEMETRY_ENABLED"] == "false"
    assert env["PHOENIX_DISABLE_AGENT_ASSISTANT"] == "true"
    assert env["PHOENIX_AGENTS_DISABLE_BASH"] == "true"
    assert any(v.endswith(":" + env["PHOENIX_WORKING_DIR"]) for v in phoenix["volumes"])


def test_compose_requires_the_api_key_from_the_host() -> None:
    raw = service("worker")["environment"]["OPENAI_API_KEY"]
    assert raw.startswith("${OPENAI_API_KEY:?"), "the key must come from the host environment"
    with pytest.raises(LookupError):
        interpolate(raw, {})
    for name in ("migrate", "bridge", "scheduler"):  # they never call the model
        assert "OPENAI_API_KEY" not in service(name)["environment"], name


@pytest.mark.parametrize("name", ZAPVET_SERVICES)
def test_compose_environment_is_valid_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    host = {"OPENAI_API_KEY": "sk-test"}
    env = {
        key: interpolate(str(value), host) for key, value in service(name)["environment"].items()
    }
    zapvet_names = {key for key in env if key.startswith("ZAPVET_")}
    assert zapvet_names <= settings_variables(), zapvet_names - settings_variables()
    for variable in settings_variables():
        monkeypatch.delenv(variable, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()

    postgres = service("postgres")["environment"]
    database = urlsplit(settings.database_url or "")
    assert (database.hostname, database.port) == ("postgres", 5432)
    assert (database.username, database.password) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
    )
    assert database.path == "/" + postgres["POSTGRES_DB"]
    assert urlsplit(settings.redis_url or "").hostname == "redis"
    assert settings.effective_log_format == "json"
    otlp = urlsplit(settings.otel_endpoint or "")
    assert otlp.hostname == "phoenix"
    assert any(published(p)[1] == str(otlp.port) for p in service("phoenix")["ports"])
    assert "openinference.project.name=zapvet" in env["OTEL_RESOURCE_ATTRIBUTES"].split(",")
    assert env["OTEL_SERVICE_NAME"] == f"zapvet-{name}"
    if name == "worker":
        build_chat_model(settings)  # what the worker checks before it starts


def test_compose_monitoring_profile_mounts_the_deploy_files() -> None:
    for name in ("prometheus", "grafana"):
        assert service(name)["profiles"] == ["monitoring"]
        for source, _ in bind_mounts(name):
            assert source.exists(), f"{name} mounts missing {source}"
    prometheus = {source.name: target for source, target in bind_mounts("prometheus")}
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert config["rule_files"] == [prometheus["prometheus-alerts.yml"]]
    assert "--config.file=" + prometheus["prometheus.yml"] in service("prometheus")["command"]

    grafana = {source.name: target for source, target in bind_mounts("grafana")}
    provisioning = Path(grafana["provisioning"])
    assert provisioning == Path("/etc/grafana/provisioning")
    providers = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/zapvet.yml").read_text())[
        "providers"
    ]
    assert [p["options"]["path"] for p in providers] == [
        str(Path(grafana["grafana-dashboard.json"]).parent)
    ]
    datasources = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    assert [(d["type"], urlsplit(d["url"]).hostname) for d in datasources] == [
        ("prometheus", "prometheus")
    ]


def test_prometheus_scrapes_the_bridge() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    bridge = jobs["zapvet-bridge"]
    _, params = cli_invocation(service("bridge")["command"])
    assert bridge.get("metrics_path", "/metrics") == "/metrics"
    assert bridge["static_configs"] == [{"targets": [f"bridge:{params['port']}"]}]


def test_queries_name_only_scraped_jobs() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    queries = [rule["expr"] for rule in alert_rules()] + [
        target["expr"] for panel in graph_panels() for target in panel["targets"]
    ]
    named = {job for query in queries for job in re.findall(r'\bjob\s*=\s*"([^"]*)"', query)}
    assert named and named <= jobs, named - jobs


# -- Prometheus alerts ----------------------------------------------------------------------


def test_alert_rules_are_well_formed() -> None:
    document = yaml.safe_load((DEPLOY / "prometheus-alerts.yml").read_text())
    assert set(document) == {"groups"}
    group_names = [group["name"] for group in document["groups"]]
    assert len(group_names) == len(set(group_names))
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)) >= 7
    for rule in alert_rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"Zapvet[A-Za-z]+", rule["alert"])
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        if "for" in rule:
            seconds(rule["for"])


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_expressions_use_documented_metrics(rule: dict[str, Any]) -> None:
    check_expression(rule["expr"])


def expression(alert: str) -> str:
    found = [rule["expr"] for rule in alert_rules() if rule["alert"] == alert]
    assert found, f"no alert {alert}"
    return " ".join(found[0].split())


def test_alerts_cover_the_seed_alerts_with_its_thresholds() -> None:
    waiting = 'sum(zapvet_queue_messages{state="waiting"})'
    assert expression("ZapvetQueueWaitingHigh") == f"{waiting} > {WAITING_ALERT}"
    assert expression("ZapvetFailedHigh") == f"sum(zapvet_queue_failed_last_hour) > {FAILED_ALERT}"
    assert expression("ZapvetNoActiveWorker") == (
        f'sum(zapvet_queue_messages{{state="active"}}) == 0 and {waiting} > 0'
    )


def test_alerts_cover_models_sends_grounding_and_the_bridge() -> None:
    model = expression("ZapvetModelErrors")
    assert 'zapvet_turns_total{status="error"}' in model and model.endswith("> 0.2")
    assert (
        seconds(next(r for r in alert_rules() if r["alert"] == "ZapvetModelErrors")["for"]) == 600
    )
    assert 'zapvet_sends_total{outcome="failed"}' in expression("ZapvetSendsFailing")
    assert "zapvet_ungrounded_facts_total" in expression("ZapvetUngroundedFacts")
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert "zapvet-bridge" in {job["job_name"] for job in config["scrape_configs"]}
    assert expression("ZapvetBridgeDown") == 'up{job="zapvet-bridge"} == 0'


@pytest.mark.parametrize(
    "expr",
    [
        "sum(zapvet_queue_depth)",  # not documented
        "sum(rate(zapvet_job_duration_seconds[5m]))",  # a histogram without its suffix
        'sum(zapvet_queue_messages{state="busy"})',  # not one of the documented values
        'sum(zapvet_queue_messages{agent="client"})',  # a label the metric does not have
        "sum(zapvet_sends_total)",  # a counter outside rate()
        "histogram_quantile(0.95, sum(rate(zapvet_job_duration_seconds_bucket[5m])))",  # no le
    ],
)
def test_expression_check_rejects(expr: str) -> None:
    with pytest.raises(AssertionError):
        check_expression(expr)


# -- Grafana dashboard ----------------------------------------------------------------------


def test_dashboard_identity_and_datasource_variable() -> None:
    board = dashboard()
    assert board["title"] == "zapvet" and board["uid"]
    assert board["schemaVersion"] >= 38
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_dashboard_panels_have_unique_ids_and_fit_the_grid() -> None:
    ids = [panel["id"] for panel in all_panels()]
    assert len(ids) == len(set(ids))
    assert len(graph_panels()) >= 10
    taken: set[tuple[int, int]] = set()
    for panel in all_panels():
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"panel {panel['title']!r} overlaps another"
        taken |= cells


def test_dashboard_queries_use_documented_metrics() -> None:
    used: set[str] = set()
    for panel in graph_panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            used |= check_expression(target["expr"])
    assert used == set(documented_metrics()), set(documented_metrics()) - used


def test_dashboard_covers_the_operating_questions() -> None:
    titles = " | ".join(panel["title"].lower() for panel in graph_panels())
    for topic in (
        "queue depth",
        "failed",
        "alerts",
        "jobs per second",
        "job duration",
        "turn duration",
        "turns",
        "tokens",
        "sends",
        "inbound",
        "escalations",
        "ungrounded",
    ):
        assert topic in titles, topic
    quantiles = {
        quantile
        for panel in graph_panels()
        for target in panel["targets"]
        if "zapvet_job_duration_seconds_bucket" in target["expr"]
        for quantile in re.findall(r"histogram_quantile\(([0-9.]+)", target["expr"])
    }
    assert quantiles == {"0.5", "0.95"}
