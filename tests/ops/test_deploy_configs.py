"""What can be validated here without a container engine or a cluster: nginx -t, promtool (or the
rules' structure), compose and Kubernetes YAML, the Dockerfile, and `make serve`'s refusals."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy"))
import serve  # noqa: E402

pytestmark = pytest.mark.embedded

SPEC_ALERTS = {"HighErrorRate": "critical", "SlowAPIResponse": "warning", "FraudDetection": "high"}
SPEC_ALERTS["DatabaseConnections"] = "warning"
SPEC_RESOURCES = {"requests": {"memory": "256Mi", "cpu": "250m"}, "limits": {"memory": "512Mi", "cpu": "500m"}}


def nginx() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found:
        pytest.fail("nginx is not installed: run `make nginx` (.ci/run does)")
    return found


def test_rendered_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    plan = serve.plan_from_env({"PORT": "8490", "STATE_DIR": str(tmp_path)})
    conf = serve.write_nginx_config(plan)
    result = subprocess.run([nginx(), "-t", "-c", str(conf)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    site = (tmp_path / "nginx" / "scoreboard.conf").read_text()
    assert "server 127.0.0.1:8492" in site
    assert "server 127.0.0.1:8493" in site


def _location(site: str, head: str) -> str:
    return site.split(head, 1)[1].split("}", 1)[0]


def test_nginx_routes_realtime_to_asgi_and_the_rest_to_wsgi() -> None:
    site = serve.render_site(listen="80", wsgi=["w:1"], asgi=["a:2"], access_log="off")
    ws = _location(site, "location /v1/realtime {")
    assert "proxy_pass http://scoreboard_asgi;" in ws
    assert "proxy_set_header Upgrade $http_upgrade;" in ws
    assert "proxy_read_timeout 3600s;" in ws
    sse = _location(site, "location /v1/leaderboard/stream {")
    assert "proxy_pass http://scoreboard_asgi;" in sse
    assert "proxy_buffering off;" in sse
    assert "proxy_pass http://scoreboard_wsgi;" in _location(site, "location / {")
    metrics = _location(site, "location = /metrics {")
    assert "return 404" in metrics and "proxy_pass" not in metrics  # never on the public port
    # A location that sets any proxy header inherits none: each must carry the request id itself.
    for head in ("location /v1/realtime {", "location /v1/leaderboard/stream {", "location / {"):
        assert "X-Request-ID $request_id" in _location(site, head)
    assert "$request_uri" not in site  # query strings (which may carry tokens) are never logged


def test_committed_compose_nginx_config_is_the_rendered_template(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["render-nginx", "--wsgi", "api:8000", "--asgi", "realtime:8001", "--listen", "80"]
    assert serve.main([*args, "--access-log", "/dev/stdout"]) == 0
    committed = (ROOT / "deploy" / "nginx" / "compose.conf").read_text()
    assert capsys.readouterr().out == committed, "regenerate deploy/nginx/compose.conf (see its first line)"


def _rules() -> dict[str, Any]:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    return {r["alert"]: r for group in rules["groups"] for r in group["rules"]}


def test_alert_rules_cover_the_spec() -> None:
    rules = _rules()
    for name, severity in SPEC_ALERTS.items():
        assert rules[name]["labels"]["severity"] == severity
        assert rules[name]["for"]
        assert "scoreboard_" in rules[name]["expr"]
    promtool = shutil.which("promtool")
    if promtool:  # Debian's `prometheus` package; the structural checks above run everywhere
        result = subprocess.run(
            [promtool, "check", "rules", str(ROOT / "deploy" / "prometheus" / "alerts.yml")],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_only_use_metrics_the_service_exposes() -> None:
    from scoreboard import metrics

    exposed = {m.describe()[0].name for m in vars(metrics).values() if hasattr(m, "describe") and hasattr(m, "_name")}
    exposed |= {"scoreboard_db_connections", "scoreboard_db_max_connections", "scoreboard_redis_up"}
    for name, rule in _rules().items():
        for used in re.findall(r"scoreboard_[a-z_]+", rule["expr"]):
            base = re.sub(r"_(total|bucket|count|sum)$", "", used)
            assert base in exposed or used in exposed, f"{name} uses {used}, which nothing exposes"


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_every_role_with_health_checks_and_restarts() -> None:
    services = _compose()["services"]
    assert set(services) >= {"postgres", "redis", "migrate", "api", "realtime", "worker", "beat", "nginx"}
    for name, service in services.items():
        if name == "migrate":
            assert service["restart"] == "no"
            continue
        assert service.get("restart") in ("unless-stopped", "always"), name
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    for role in ("api", "realtime", "worker", "beat"):
        assert services[role]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "/readyz" in str(services["api"]["healthcheck"]["test"])
    assert "/readyz" in str(services["realtime"]["healthcheck"]["test"])


def test_compose_live_path_cpu_weight_is_a_knob_defaulting_to_the_apis() -> None:
    services = _compose()["services"]
    assert services["live"]["cpu_shares"] == "${LIVE_CPU_SHARES:-1024}"
    assert "cpu_shares" not in services["api"]  # Docker's default weight, 1024


def test_compose_nginx_has_room_for_ten_thousand_websockets() -> None:
    """Each proxied WebSocket holds two nginx connections; the image's default (1,024 per worker) is
    far too low, so compose mounts its own main config."""
    mounts = {m.split(":")[1]: m.split(":")[0] for m in _compose()["services"]["nginx"]["volumes"]}
    main = (ROOT / mounts["/etc/nginx/nginx.conf"]).read_text()
    connections = int(re.search(r"worker_connections\s+(\d+);", main).group(1))  # type: ignore[union-attr]
    nofile = int(re.search(r"worker_rlimit_nofile\s+(\d+);", main).group(1))  # type: ignore[union-attr]
    assert connections >= 2 * 10_000
    assert nofile >= connections
    assert "include /etc/nginx/conf.d/*.conf;" in main
    assert mounts["/etc/nginx/conf.d/default.conf"] == "./deploy/nginx/compose.conf"


def test_compose_takes_secrets_only_from_the_environment() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for name in ("DJANGO_SECRET_KEY", "JWT_SECRET", "ACTION_TOKEN_SECRET", "POSTGRES_PASSWORD"):
        for line in text.splitlines():
            if re.match(rf"\s*{name}:", line):
                assert "${" + name in line, line
    docker_compose = shutil.which("docker-compose")
    if docker_compose:
        env = dict(os.environ, POSTGRES_PASSWORD="x", DJANGO_SECRET_KEY="x", JWT_SECRET="x", ACTION_TOKEN_SECRET="x")
        result = subprocess.run([docker_compose, "config", "-q"], cwd=ROOT, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def _k8s_documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_kubernetes_workloads_have_probes_resources_and_secret_references() -> None:
    docs = _k8s_documents()
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {
        "scoreboard-api",
        "scoreboard-realtime",
        "scoreboard-live",
        "scoreboard-worker",
        "scoreboard-beat",
    }
    workloads = [*deployments.values(), *(d for d in docs if d["kind"] == "Job")]
    for workload in workloads:
        for container in workload["spec"]["template"]["spec"]["containers"]:
            assert container["resources"] == SPEC_RESOURCES, workload["metadata"]["name"]
            assert container["securityContext"]["runAsNonRoot"] is True
            env = {e["name"]: e for e in container.get("env", [])}
            for secret in ("DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "JWT_SECRET", "ACTION_TOKEN_SECRET"):
                assert "secretKeyRef" in env[secret]["valueFrom"], secret
                assert "value" not in env[secret]
            # `args`, not `command`: the image's entry point prepares the metrics directory.
            assert "command" not in container
    for name in ("scoreboard-api", "scoreboard-realtime", "scoreboard-live"):
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert deployments["scoreboard-beat"]["spec"]["replicas"] == 1
    assert deployments["scoreboard-beat"]["spec"]["strategy"]["type"] == "Recreate"
    kustomization = next(d for d in docs if d["kind"] == "Kustomization")
    assert "secret.example.yaml" not in kustomization["resources"]


def test_kubernetes_ingress_routes_realtime_paths_to_the_realtime_service() -> None:
    ingress = next(d for d in _k8s_documents() if d["kind"] == "Ingress")
    paths = {p["path"]: p["backend"]["service"]["name"] for p in ingress["spec"]["rules"][0]["http"]["paths"]}
    assert paths == {
        "/v1/realtime": "scoreboard-realtime",
        "/v1/leaderboard/stream": "scoreboard-realtime",
        "/": "scoreboard-api",
    }


def test_kubernetes_live_path_is_l4_and_trusts_no_forwarded_header() -> None:
    """The page's WebSocket path: an L4 load balancer that keeps the client address, straight to the pods."""
    docs = _k8s_documents()
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "scoreboard-live")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["externalTrafficPolicy"] == "Local"
    live = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "scoreboard-live")
    container = live["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[:2] == ["python", "deploy/reuseport.py"] and "--no-proxy-headers" in args
    assert not [a for a in args if a.startswith(("--proxy-headers", "--forwarded-allow-ips"))]
    assert {e["name"]: e.get("value") for e in container["env"]}["TRUSTED_PROXIES"] == ""
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    assert config["data"]["REALTIME_PUBLIC_URL"].startswith("wss://")


def test_dockerfile_is_pinned_slim_and_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"ARG BASE_IMAGE=(\S+)", text)
    assert base is not None
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base.group(1))
    users = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".git", ".venv", ".state", "db.sqlite3", ".env"):
        assert path in ignored


def test_serve_refuses_to_start_without_postgres_and_redis() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["PORT"] = "8491"
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "serve.py"), "start"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "DATABASE_URL and REDIS_URL not set" in result.stderr
