"""docker-compose.yml describes the production topology (no Docker engine runs here to start it)."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def interpolate(value: str, env: dict) -> str:
    """Expand ${VAR}, ${VAR-default} and ${VAR:-default} as docker compose does (unset vs empty matters)."""

    def expand(match: re.Match) -> str:
        name, op, default = match.group(1), match.group(2) or "", match.group(3) or ""
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env.get(name, default)
        return env.get(name, "")

    return re.sub(r"\$\{(\w+)(:-|-|:\?)?([^}]*)\}", expand, value)


def env_file(path: str) -> dict:
    lines = (ROOT / path).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def command(service: dict, env: dict) -> list[str]:
    """Return a service's command as compose runs it with ``env`` (the socket nodes' names their server)."""
    return [interpolate(part, env) for part in service.get("command", [])]


def test_it_runs_postgres_redis_two_socket_nodes_a_rest_node_a_proxy_one_worker_and_exactly_one_beat():
    services = compose()["services"]
    assert {"postgres", "redis", "web1", "web2", "api", "proxy", "worker", "beat"} <= set(services)
    daphnes = [name for name, s in services.items() if "daphne" in command(s, {})]
    assert sorted(daphnes) == ["api", "web1", "web2"]
    beats = [name for name, s in services.items() if "beat" in s.get("command", [])]
    assert beats == ["beat"]
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1


def test_the_socket_nodes_run_uvicorn_when_asked_through_deploy_serve_and_the_rest_node_stays_on_daphne():
    services = compose()["services"]
    asked = {"HEARO_ASGI_SERVER": "uvicorn"}
    assert sorted(name for name, s in services.items() if "uvicorn" in command(s, asked)) == ["web1", "web2"]
    assert command(services["web1"], asked) == ["sh", "deploy/serve", "uvicorn"]  # tests/test_uvicorn.py runs it
    assert "daphne" in command(services["api"], asked)


def test_the_rest_node_has_the_cpu_weight_the_benchmark_gives_it_and_the_socket_nodes_the_default():
    from bench.cluster import REST_NICE

    services = compose()["services"]
    # The bench's autogroup nice -5 is a group weight of 3,121 (the kernel's table), 1,024 at nice 0: ~3x.
    assert REST_NICE == -5 and services["api"]["cpu_shares"] == 3 * 1024
    assert all("cpu_shares" not in services[name] for name in ("web1", "web2"))


def test_every_app_process_is_wired_to_postgres_and_redis_and_waits_for_them():
    services = compose()["services"]
    for name in ("web1", "web2", "api", "worker", "beat", "migrate"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:" in env["DATABASE_URL"]
        assert interpolate(env["REDIS_URL"], {}).startswith("redis://redis:")
        assert interpolate(env["REDIS_SENTINELS"], {}) == ""  # one Redis unless deploy/ha.env says otherwise
        assert "LIVEKIT_API_SECRET" in env and "SECRET_KEY" in env
    for name in ("postgres", "redis", "web1", "web2", "api", "proxy"):
        assert "healthcheck" in services[name], name
    assert set(services["proxy"]["depends_on"]) == {"web1", "web2", "api"}


def sentinel_config(service: dict) -> str:
    """Return the sentinel.conf a sentinel service writes at start (its command is a shell script)."""
    script = service["command"][-1]
    return re.search(r"<<EOF\n(.*?)\nEOF", script, re.S).group(1)


def test_the_ha_profile_runs_the_primary_a_replica_and_three_sentinels_that_fail_over_by_majority():
    services = compose()["services"]
    ha = {name for name, s in services.items() if "ha" in s.get("profiles", [])}
    assert ha == {"redis-replica", "sentinel1", "sentinel2", "sentinel3"}
    assert "profiles" not in services["redis"]  # the primary runs in every profile
    replica = services["redis-replica"]["command"]
    assert replica[replica.index("--replicaof") + 1 :][:2] == ["redis", "6379"]
    masters = set()
    for name in ("sentinel1", "sentinel2", "sentinel3"):
        service = services[name]
        assert service["image"].startswith("redis:") and "healthcheck" in service, name
        assert "redis-sentinel" in service["command"][-1], name
        conf = sentinel_config(service)
        monitored = re.findall(r"^sentinel monitor (\S+) (\S+) (\d+) (\d+)$", conf, re.M)
        assert [(host, port, quorum) for _, host, port, quorum in monitored] == [("redis", "6379", "2")], name
        masters.add(monitored[0][0])
        assert "sentinel resolve-hostnames yes" in conf and "sentinel announce-hostnames yes" in conf
        assert {"redis", "redis-replica"} <= set(service["depends_on"]), name
    # Every sentinel watches the same master name, the one the app asks for.
    app = services["web1"]["environment"]
    ha_env = env_file("deploy/ha.env")
    (master,) = masters
    assert interpolate(master, ha_env) == interpolate(app["REDIS_SENTINEL_MASTER"], ha_env) == "mymaster"


def test_deploy_ha_env_empties_redis_url_and_names_the_three_sentinels():
    ha_env = env_file("deploy/ha.env")
    assert ha_env["REDIS_URL"] == ""
    assert ha_env["COMPOSE_PROFILES"] == "ha"
    sentinels = ha_env["REDIS_SENTINELS"].split(",")
    assert sentinels == ["sentinel1:26379", "sentinel2:26379", "sentinel3:26379"]
    services = compose()["services"]
    for sentinel in sentinels:
        name, port = sentinel.split(":")
        assert f"port {port}" in sentinel_config(services[name])
    assert "docker compose --env-file deploy/ha.env --profile ha up" in (ROOT / "docker-compose.yml").read_text()


def test_every_app_process_passes_the_sentinels_through_and_drops_redis_url_with_them():
    services = compose()["services"]
    ha_env = env_file("deploy/ha.env")
    for name in ("web1", "web2", "api", "worker", "beat", "migrate"):
        env = services[name]["environment"]
        # The app refuses REDIS_URL and REDIS_SENTINELS together: an empty REDIS_URL must stay empty.
        assert interpolate(env["REDIS_URL"], ha_env) == "", name
        assert interpolate(env["REDIS_SENTINELS"], ha_env) == ha_env["REDIS_SENTINELS"], name
        assert interpolate(env["REDIS_SENTINEL_MASTER"], ha_env) == ha_env["REDIS_SENTINEL_MASTER"], name
        # Without deploy/ha.env: one Redis, and no master name the app would refuse without sentinels.
        assert interpolate(env["REDIS_SENTINEL_MASTER"], {}) == "", name


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
