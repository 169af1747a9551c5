"""docker-compose.yml describes the production topology (no Docker engine runs here to start it)."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_it_runs_postgres_redis_two_socket_nodes_a_rest_node_a_proxy_one_worker_and_exactly_one_beat():
    services = compose()["services"]
    assert {"postgres", "redis", "web1", "web2", "api", "proxy", "worker", "beat"} <= set(services)
    daphnes = [name for name, s in services.items() if "daphne" in s.get("command", [])]
    assert sorted(daphnes) == ["api", "web1", "web2"]
    beats = [name for name, s in services.items() if "beat" in s.get("command", [])]
    assert beats == ["beat"]
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1


def test_every_app_process_is_wired_to_postgres_and_redis_and_waits_for_them():
    services = compose()["services"]
    for name in ("web1", "web2", "api", "worker", "beat", "migrate"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:" in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("redis://redis:")
        assert "LIVEKIT_API_SECRET" in env and "SECRET_KEY" in env
    for name in ("postgres", "redis", "web1", "web2", "api", "proxy"):
        assert "healthcheck" in services[name], name
    assert set(services["proxy"]["depends_on"]) == {"web1", "web2", "api"}


def test_the_proxy_upgrades_websockets_and_keeps_sockjs_sessions_sticky():
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "proxy_set_header Upgrade $http_upgrade" in conf
    sticky = re.search(r"upstream hearo_sockjs \{(.*?)\}", conf, re.S).group(1)
    assert "hash $sockjs_server consistent" in sticky
    assert re.search(r"location /ws/sockjs/ \{[^}]*proxy_pass http://hearo_sockjs", conf, re.S)
    # the sticky key is the {server} segment the SockJS client picks per session
    pattern = re.search(r"~\^(/ws/sockjs/\S+) \$server_id", conf).group(1)
    assert re.match(pattern.replace("(?<server_id>", "(?P<server_id>"), "/ws/sockjs/123/abc/xhr_streaming")
    assert "buffering off" in conf  # streaming transports
    volumes = compose()["services"]["proxy"]["volumes"]
    assert any(v.startswith("./deploy/nginx.conf:") for v in volumes)


def test_the_rest_api_goes_to_the_node_without_sockets_and_falls_back_to_the_socket_nodes():
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert re.search(r"location /api/ \{[^}]*proxy_pass http://hearo_api;", conf, re.S)
    rest = re.search(r"upstream hearo_api \{(.*?)\}", conf, re.S).group(1)
    servers = dict(re.findall(r"server (\w+):8000([^;]*);", rest))
    assert "backup" not in servers.pop("api")
    assert servers and all("backup" in options for options in servers.values())
    assert set(servers) == {"web1", "web2"}
    # sockets never reach the api node: /ws/ and /ws/sockjs/ have their own upstreams
    sockets = re.search(r"upstream hearo \{(.*?)\}", conf, re.S).group(1)
    assert "api:" not in sockets


def test_a_livekit_server_runs_with_the_apps_key_pair_and_reports_to_the_rest_node():
    services = compose()["services"]
    livekit = services["livekit"]
    config = yaml.safe_load(livekit["environment"]["LIVEKIT_CONFIG"])
    app = services["web1"]["environment"]
    # Compose interpolates the same variables into both, so the server checks the tokens the app signs.
    assert config["keys"] == {app["LIVEKIT_API_KEY"]: app["LIVEKIT_API_SECRET"]}
    assert config["webhook"]["api_key"] == app["LIVEKIT_API_KEY"]
    assert config["webhook"]["urls"] == ["http://api:8000/api/livekit/webhook"]
    published = {port.split(":")[0] for port in livekit["ports"]}
    assert {"7880", "7881", "7882"} <= published
    assert app["LIVEKIT_URL"].endswith(":7880}")  # browsers dial the published signalling port


def test_the_image_leaves_the_local_virtualenv_database_and_caches_out():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", "node_modules", "db.sqlite3", ".git", "**/__pycache__"} <= ignored
