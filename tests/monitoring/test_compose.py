"""docker-compose.yml and the Dockerfile agree with the repo and with each other.

There is no Docker engine on the build machines, so this checks structure and
references: every mounted or built path exists, and the host names and ports
that Prometheus, Grafana, the daemon and the producer use are the ones the
compose services really offer.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from stream.kafka.apache import kafka_version

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
PROMETHEUS_CONFIG = REPO / "monitoring" / "prometheus" / "prometheus.yml"
GRAFANA = REPO / "monitoring" / "grafana"
DEFAULT_METRICS_PORT = 9464
DEFAULT_PROMETHEUS_PORT = 9090


def load_yaml(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = load_yaml(COMPOSE)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = compose["services"]
    return found


def volume_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, container path) of every volume, short or long syntax."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts.append((str(volume["source"]), str(volume["target"])))
        else:
            source, target = str(volume).split(":")[:2]
            mounts.append((source, target))
    return mounts


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> repo path of the bind mounts (sources starting with ./)."""
    return {
        target: (REPO / source).resolve()
        for source, target in volume_mounts(service)
        if source.startswith(("./", "../"))
    }


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def option(command: list[str], name: str) -> str:
    """The value following ``name`` in a command list (or ``name=value``)."""
    for i, arg in enumerate(command):
        if arg == name:
            return command[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} not in {command}")


def container_ports(service: dict[str, Any]) -> set[int]:
    return {int(str(port).split(":")[-1].split("/")[0]) for port in service.get("ports", [])}


def advertised_listeners(kafka: dict[str, Any]) -> dict[str, str]:
    """Listener name -> advertised host:port of the Kafka service."""
    raw = environment(kafka)["KAFKA_ADVERTISED_LISTENERS"]
    return dict(entry.split("://", 1) for entry in raw.split(","))


def daemon_metrics_port(daemon: dict[str, Any]) -> int:
    return int(environment(daemon).get("STREAMLEARN_METRICS_PORT", DEFAULT_METRICS_PORT))


def test_the_whole_picture_is_there(services: dict[str, Any]) -> None:
    assert set(services) >= {"kafka", "producer", "streamlearn", "prometheus", "grafana"}
    # The Kafka the tests run against: same release, so the same major version.
    assert services["kafka"]["image"] == f"apache/kafka:{kafka_version()}"
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    assert environment(services["kafka"])["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_producer_and_daemon_are_built_from_the_repo_dockerfile(services: dict[str, Any]) -> None:
    for name in ("producer", "streamlearn"):
        build = services[name]["build"]
        context = REPO / build["context"]
        assert context.resolve() == REPO
        assert (context / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE


def test_every_bind_mount_exists_in_the_repo(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for target, source in bind_mounts(service).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) is missing"


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for source, _ in volume_mounts(service):
            if not source.startswith(("./", "../", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"


def test_daemon_state_dir_is_a_volume(services: dict[str, Any]) -> None:
    daemon = services["streamlearn"]
    state_dir = environment(daemon)["STREAMLEARN_STATE_DIR"]
    assert state_dir in {target for _, target in volume_mounts(daemon)}


def test_scrape_target_is_the_daemon_service_and_metrics_port(services: dict[str, Any]) -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "streamlearn"]
    targets = [t for static in job["static_configs"] for t in static["targets"]]
    daemon = services["streamlearn"]
    port = daemon_metrics_port(daemon)
    assert targets == [f"streamlearn:{port}"]
    assert port in container_ports(daemon)


def test_daemon_healthcheck_probes_healthz_on_the_metrics_port(services: dict[str, Any]) -> None:
    daemon = services["streamlearn"]
    probe = " ".join(daemon["healthcheck"]["test"])
    assert f":{daemon_metrics_port(daemon)}/healthz" in probe


def test_prometheus_mounts_the_project_config_and_rules(services: dict[str, Any]) -> None:
    prometheus = services["prometheus"]
    config_file = PurePosixPath(option(prometheus["command"], "--config.file"))
    mounts = bind_mounts(prometheus)
    assert mounts[str(config_file.parent)] == PROMETHEUS_CONFIG.parent
    assert config_file.name == PROMETHEUS_CONFIG.name
    for rule_file in load_yaml(PROMETHEUS_CONFIG)["rule_files"]:
        assert not rule_file.startswith("/"), "rule files must be relative to the config"
        assert (PROMETHEUS_CONFIG.parent / rule_file).is_file(), rule_file


def test_grafana_datasource_is_the_prometheus_service(services: dict[str, Any]) -> None:
    provisioning = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = provisioning["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == "prometheus"
    url = urlsplit(source["url"])
    command = services["prometheus"]["command"]
    listen = (
        option(command, "--web.listen-address")
        if any(arg.startswith("--web.listen-address") for arg in command)
        else f":{DEFAULT_PROMETHEUS_PORT}"
    )
    assert url.hostname == "prometheus" and "prometheus" in services
    assert url.port == int(listen.rsplit(":", 1)[1])


def test_grafana_provisions_the_mounted_dashboards(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    mounts = bind_mounts(grafana)
    assert mounts["/etc/grafana/provisioning"] == GRAFANA / "provisioning"
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "streamlearn.yml")
    (entry,) = provider["providers"]
    assert mounts[entry["options"]["path"]] == GRAFANA / "dashboards"
    env = environment(grafana)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    home = PurePosixPath(env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert (mounts[str(home.parent)] / home.name).is_file()


def test_daemon_and_producer_use_the_kafka_listener(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    internal = advertised_listeners(kafka)[environment(kafka)["KAFKA_INTER_BROKER_LISTENER_NAME"]]
    host, port = internal.rsplit(":", 1)
    assert host == "kafka"
    listeners = environment(kafka)["KAFKA_LISTENERS"]
    assert re.search(rf"PLAINTEXT://[^,]*:{port}(,|$)", listeners)

    daemon_env = environment(services["streamlearn"])
    producer_cmd = services["producer"]["command"]
    assert daemon_env["STREAMLEARN_BOOTSTRAP_SERVERS"] == internal
    assert option(producer_cmd, "--bootstrap-servers") == internal
    assert option(producer_cmd, "--topic") == daemon_env["STREAMLEARN_TOPIC"]
    for name in ("streamlearn", "producer"):
        assert services[name]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_daemon_runs_with_retrain_and_producer_drifts(services: dict[str, Any]) -> None:
    daemon = services["streamlearn"]
    assert daemon["command"] == ["run"]
    assert environment(daemon)["STREAMLEARN_DRIFT_ACTION"] == "retrain"
    producer_cmd = services["producer"]["command"]
    assert producer_cmd[0] == "produce"
    assert "--drift-at" in producer_cmd
    assert all(key.startswith("STREAMLEARN_") for key in environment(daemon))


def test_dockerfile_installs_the_project_as_a_non_root_user() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"pip install \.(\s|$)", text)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in {"root", "0"}
    assert re.search(r'^ENTRYPOINT \["streamlearn"\]', text, re.M)
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "streamlearn" in scripts["project"]["scripts"]
    for line in re.findall(r"^COPY\s+(.+)$", text, re.M):
        for source in line.split()[:-1]:
            assert (REPO / source).exists(), f"COPY source {source} is missing"


def test_producer_command_is_accepted_by_the_cli(services: dict[str, Any]) -> None:
    from stream.cli import build_parser

    args = build_parser().parse_args(services["producer"]["command"])
    assert args.command == "produce" and args.generator == "agrawal"
    assert args.drift_at and args.count > max(args.drift_at)


def test_daemon_environment_is_accepted_by_the_settings(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's STREAMLEARN_* variables load as they are (unknown ones are refused)."""
    from learners.spec import parse_model_spec
    from stream.settings import ENV_PREFIX, RunSettings, load_settings

    if "state_dir" not in RunSettings.model_fields:
        pytest.skip("RunSettings has no state_dir yet (--state-dir comes with checkpoints)")
    env = environment(services["streamlearn"])
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings({}, environ=env)
    assert settings.metrics_port == daemon_metrics_port(services["streamlearn"])
    assert settings.metrics_host in {"0.0.0.0", "::"}, "Prometheus scrapes from another container"
    parse_model_spec(settings.model)
