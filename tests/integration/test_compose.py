"""The container stack (Dockerfile, docker-compose.yml) holds together without a Docker
engine: every path it mounts is in the repository, Prometheus scrapes the `vpo` service
on the port VPO listens on, Grafana's provisioning points at what is mounted, every image
is pinned, every port is published on loopback, and what the image runs — `vpo serve`
with its options, the health check of `/healthz` — exists in VPO. `docker compose config`
runs only where a compose client is installed."""

import asyncio
import json
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.helpers import CLEANUP, database_with_files, run_vpo

ROOT = Path(__file__).parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# Host paths written by other parts of the stack, and what each one is, for a failure
# that says which is missing rather than a bare FileNotFoundError.
PROVIDED_BY = {
    "telemetry/prometheus.yml": "Prometheus's configuration (scrape job `vpo`)",
    "telemetry/rules.yml": "Prometheus's recording and alerting rules",
    "grafana/provisioning": "Grafana's provisioning (datasources/, dashboards/)",
    "grafana/provisioning/datasources": "Grafana's datasource provisioning",
    "grafana/provisioning/dashboards": "Grafana's dashboard provider",
    "grafana/dashboards": "the folder of the VPO dashboard",
    "grafana/dashboards/vpo.json": "the VPO dashboard",
}
# The one mount whose host side is the user's data, not the repository's: the videos VPO
# keeps conforming (docker creates the default ./library on first start).
USER_DATA_TARGETS = {"/library"}
EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+([.-][0-9A-Za-z.-]+)?$")
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?+])(?P<word>[^}]*))?\}")


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def with_defaults(text: str) -> str | None:
    """`text` as compose reads it with no variable set: `${X:-d}` is `d`; None when a
    variable without a default (`${X}`, `${X:?message}`) stands in it."""
    unresolved = False

    def default(match: re.Match[str]) -> str:
        nonlocal unresolved
        if match["op"] in (":-", "-"):
            return match["word"]
        if match["op"] in (":+", "+"):
            return ""
        unresolved = True
        return ""

    value = VARIABLE.sub(default, text)
    return None if unresolved else value


def repo_path(relative: str | Path) -> Path:
    """A file or folder of the repository that the stack needs (relative to the compose
    file, or a host path found through a mount); fails naming it when it is not there."""
    path = (COMPOSE_FILE.parent / relative).resolve()
    if not path.exists():
        key = path.relative_to(ROOT).as_posix()
        what = PROVIDED_BY.get(key, "a path docker-compose.yml needs")
        pytest.fail(f"missing {key} ({what}): docker-compose.yml mounts it")
    return path


@dataclass(frozen=True)
class Mount:
    source: str  # as written
    target: str
    read_only: bool
    named: bool  # a named volume, not a host path

    @property
    def host(self) -> Path | None:
        """The host path of a bind mount, with variables at their defaults."""
        if self.named:
            return None
        value = with_defaults(self.source)
        return None if value is None else (COMPOSE_FILE.parent / value)


def split_outside_variables(text: str) -> list[str]:
    """`text` split at each `:` that is not inside a `${…}`."""
    parts, depth, current = [], 0, ""
    for index, char in enumerate(text):
        if text.startswith("${", index):
            depth += 1
        elif char == "}" and depth:
            depth -= 1
        if char == ":" and not depth:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def mounts(service: dict[str, Any]) -> list[Mount]:
    result = []
    for entry in service.get("volumes", []):
        assert isinstance(entry, str), f"use the short volume syntax: {entry!r}"
        source, target, *mode = split_outside_variables(entry)
        named = not source.startswith((".", "/", "~", "$"))
        result.append(Mount(source, target, read_only="ro" in mode, named=named))
    return result


def in_container(service: dict[str, Any], container_path: str) -> Path:
    """The host path that `container_path` is inside `service`, through its bind mounts
    (the deepest mount wins, as in the container)."""
    best: Mount | None = None
    for mount in mounts(service):
        if mount.named:
            continue
        inside = container_path == mount.target or container_path.startswith(mount.target + "/")
        if inside and (best is None or len(mount.target) > len(best.target)):
            best = mount
    assert best is not None and best.host is not None, f"{container_path} is not mounted"
    rest = container_path[len(best.target) :].lstrip("/")
    return best.host / rest if rest else best.host


def published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of each published port."""
    result = []
    for entry in service.get("ports", []):
        assert isinstance(entry, str), f"use the short port syntax, quoted: {entry!r}"
        parts = entry.rsplit(":", 2)
        assert len(parts) == 3, f"{entry} is published on every interface, not on loopback"
        address, host_port, container_port = parts
        result.append((address, int(host_port), int(container_port.split("/")[0])))
    return result


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (NAME, arguments), continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        name, _, arguments = whole.partition(" ")
        instructions.append((name.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends in a continuation"
    return instructions


def instruction(name: str) -> list[str]:
    return [arguments for found, arguments in dockerfile() if found == name]


def dockerfile_cmd() -> list[str]:
    (cmd,) = instruction("CMD")
    argv = json.loads(cmd)  # the exec form: vpo is PID 1's child of init, gets SIGTERM
    assert isinstance(argv, list)
    return argv


def dockerfile_env() -> dict[str, str]:
    words = shlex.split(" ".join(instruction("ENV")))
    return dict(word.split("=", 1) for word in words)


def option_value(argv: list[str], option: str) -> str:
    return argv[argv.index(option) + 1]


def test_every_bind_mounted_host_path_exists_in_the_repository() -> None:
    missing = []
    for name, service in services().items():
        for mount in mounts(service):
            if mount.named or mount.target in USER_DATA_TARGETS:
                continue
            host = mount.host
            assert host is not None, f"{name}: {mount.source} has no default"
            if not host.exists():
                key = host.resolve().relative_to(ROOT).as_posix()
                what = PROVIDED_BY.get(key, "")
                missing.append(f"{key} ({name}: {mount.target}){' — ' + what if what else ''}")
    if missing:
        pytest.fail("mounted but missing in the repository: " + "; ".join(missing))
    # Everything the containers are told to read is mounted read-only.
    for name, service in services().items():
        for mount in mounts(service):
            if not mount.named and mount.target not in USER_DATA_TARGETS:
                assert mount.read_only, f"{name}: {mount.source} should be mounted :ro"
    # Named volumes are declared; the database lives on one.
    declared = set(compose().get("volumes") or {})
    for name, service in services().items():
        for mount in mounts(service):
            if mount.named:
                assert mount.source in declared, f"{name}: volume {mount.source} undeclared"


def test_the_library_is_the_users_and_the_policy_a_valid_one() -> None:
    from vpo.policy.loader import load_policy

    vpo = services()["vpo"]
    by_target = {mount.target: mount for mount in mounts(vpo)}
    argv = dockerfile_cmd()
    library = by_target[option_value(argv, "--watch")]
    assert not library.read_only, "VPO rewrites the library's files"
    assert library.source.startswith("${VPO_LIBRARY"), library.source
    policy = by_target[option_value(argv, "--policy")]
    assert policy.read_only
    assert policy.host is not None and policy.host.resolve() == CLEANUP.resolve()
    assert load_policy(policy.host).name  # the default policy is valid
    environment = vpo["environment"]
    database = Path(environment["VPO_DB"])
    assert database == Path(dockerfile_env()["VPO_DB"])
    (data,) = [m for m in mounts(vpo) if database.is_relative_to(m.target)]
    assert data.named, "the database is on a named volume"


def test_the_prometheus_scrape_target_is_the_vpo_service_and_its_port() -> None:
    stack = services()
    prometheus = stack["prometheus"]
    command = prometheus["command"]
    flags = dict(item.split("=", 1) for item in command if "=" in item)
    assert "--enable-feature=exemplar-storage" in command
    config_path = in_container(prometheus, flags["--config.file"])
    config = yaml.safe_load(repo_path(config_path).read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert "vpo" in jobs, f"no scrape job `vpo` in telemetry/prometheus.yml: {sorted(jobs)}"
    targets = [t for group in jobs["vpo"].get("static_configs", []) for t in group["targets"]]
    port = int(option_value(dockerfile_cmd(), "--port"))
    assert f"vpo:{port}" in targets, targets
    assert port in {container for _, _, container in published(stack["vpo"])}
    assert jobs["vpo"].get("metrics_path", "/metrics") == "/metrics"
    for target in targets:
        assert target.rsplit(":", 1)[0] in stack, f"{target} is not a compose service"
    # The rule files Prometheus loads are in the mounted folder.
    config_dir = posixpath.dirname(flags["--config.file"])
    for rule_file in config.get("rule_files", []):
        inside = rule_file if rule_file.startswith("/") else f"{config_dir}/{rule_file}"
        repo_path(in_container(prometheus, inside))


def test_grafana_provisioning_points_at_what_is_mounted() -> None:
    stack = services()
    grafana = stack["grafana"]
    provisioning = in_container(grafana, "/etc/grafana/provisioning")
    providers_dir = repo_path(provisioning / "dashboards")
    datasources_dir = repo_path(provisioning / "datasources")
    provider_files = sorted(providers_dir.glob("*.y*ml"))
    assert provider_files, f"no provider in {providers_dir}"
    for file in provider_files:
        for provider in yaml.safe_load(file.read_text())["providers"]:
            path = provider["options"]["path"]
            assert path.startswith("/var/lib/grafana/dashboards"), (
                f"{file.name}: provider path {path} is not the mounted /var/lib/grafana/dashboards"
            )
            host = repo_path(in_container(grafana, path))
            assert list(host.glob("*.json")), f"no dashboard under {host}"
    datasource_files = sorted(datasources_dir.glob("*.y*ml"))
    assert datasource_files, f"no datasource in {datasources_dir}"
    datasources = [
        source
        for file in datasource_files
        for source in yaml.safe_load(file.read_text()).get("datasources", [])
    ]
    by_uid = {source.get("uid"): source for source in datasources}
    assert "vpo-prometheus" in by_uid, f"no datasource uid vpo-prometheus: {sorted(by_uid)}"
    for source in datasources:
        url = urlsplit(source["url"])
        assert url.hostname in stack, f"{source.get('uid')}: {url.hostname} is not a service"
        ports = {container for _, _, container in published(stack[url.hostname])}
        assert url.port in ports, f"{source['url']}: not a port of {url.hostname}"
    assert urlsplit(by_uid["vpo-prometheus"]["url"]).hostname == "prometheus"
    # The home dashboard is the provisioned one.
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    repo_path(in_container(grafana, home))


def test_every_image_is_pinned_and_the_admin_password_must_be_set() -> None:
    for name, service in services().items():
        if "image" not in service:
            assert "build" in service, f"{name}: neither image nor build"
            continue
        image = service["image"]
        if DIGEST.search(image):
            continue
        reference = image.rsplit("/", 1)[-1]
        assert ":" in reference, f"{name}: {image} has no tag"
        tag = reference.split(":", 1)[1]
        assert tag != "latest" and EXACT_VERSION.match(tag), f"{name}: {image} not pinned"
    (base,) = instruction("FROM")
    assert DIGEST.search(base) and EXACT_VERSION.match(
        base.split("@")[0].split(":")[1].split("-")[0]
    ), f"the Dockerfile's base is not pinned: {base}"
    password = services()["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert with_defaults(password) is None and ":?" in password, "admin password must be set"


def test_every_port_is_published_on_loopback() -> None:
    for name, service in services().items():
        for address, _, _ in published(service):
            assert address == "127.0.0.1", f"{name} publishes on {address}"
    assert {p for _, p, _ in published(services()["vpo"])} == {8321}
    assert {p for _, p, _ in published(services()["prometheus"])} == {9090}
    assert {p for _, p, _ in published(services()["grafana"])} == {3000}


def test_the_tracing_profile_is_optional_and_off_by_default() -> None:
    stack = services()
    traced = [name for name, service in stack.items() if "tracing" in service.get("profiles", [])]
    assert traced == ["jaeger"]
    assert {c for _, _, c in published(stack["jaeger"])} >= {16686, 4318}
    optional = {"jaeger": ["tracing"], "redis": ["workers"], "worker": ["workers"]}
    for name, service in stack.items():
        wanted = optional.get(name)
        if wanted is None:
            assert not service.get("profiles"), f"{name} must start without a profile"
        else:
            assert service["profiles"] == wanted, name
    environment = stack["vpo"]["environment"]
    # Nothing leaves the machine unless the user says where (README.md).
    assert with_defaults(environment["OTEL_EXPORTER_OTLP_ENDPOINT"]) == ""
    assert with_defaults(environment["VPO_TRACE_URL"]) == ""
    assert with_defaults(environment["VPO_API_TOKEN"]) == ""


def test_the_health_check_asks_healthz_which_the_server_answers(tmp_path: Path) -> None:
    """The router of `make_app` has GET /healthz, and the very command of the compose
    health check (its port moved to the test server's) exits 0 against it."""
    from aiohttp.test_utils import TestServer

    from vpo.server import make_app

    vpo = services()["vpo"]
    compose_test = vpo["healthcheck"]["test"]
    assert compose_test[0] == "CMD"
    (docker_check,) = instruction("HEALTHCHECK")
    docker_test = json.loads(docker_check.split(" CMD ", 1)[1])
    assert docker_test == compose_test[1:], "the Dockerfile and compose checks differ"
    code = compose_test[-1]
    port = int(option_value(dockerfile_cmd(), "--port"))
    assert f"http://127.0.0.1:{port}/healthz" in code

    app = make_app(database_with_files(tmp_path / "vpo.db"))
    routes = {(route.method, route.resource.canonical) for route in app.router.routes()}
    assert ("GET", "/healthz") in routes

    async def scenario() -> int:
        server = TestServer(app)
        await server.start_server()
        try:
            moved = code.replace(f"127.0.0.1:{port}", f"127.0.0.1:{server.port}")
            process = await asyncio.create_subprocess_exec(sys.executable, "-c", moved)
            return await asyncio.wait_for(process.wait(), 30)
        finally:
            await server.close()

    assert asyncio.run(scenario()) == 0


def test_the_image_runs_vpo_serve_with_options_it_has() -> None:
    argv = dockerfile_cmd()
    assert argv[:2] == ["vpo", "serve"]
    help_text = run_vpo("serve", "--help")
    assert help_text.returncode == 0, help_text.stderr
    options = [arg for arg in argv if arg.startswith("--")]
    assert options, argv
    for option in options:
        assert re.search(rf"(^|[\s,]){re.escape(option)}\b", help_text.stdout), option
    assert option_value(argv, "--host") == "0.0.0.0"  # noqa: S104 - inside the container
    (expose,) = instruction("EXPOSE")
    port = int(option_value(argv, "--port"))
    assert int(expose.split("/")[0]) == port
    assert port in {container for _, _, container in published(services()["vpo"])}
    # VPO_DB is on the /data volume; the user is not root.
    assert dockerfile_env()["VPO_DB"] == "/data/library.db"
    volumes = json.loads(instruction("VOLUME")[0])
    assert {"/data", "/library", "/config"} <= set(volumes)
    (user,) = instruction("USER")
    assert user not in ("root", "0") and user == "vpo"
    runs = " ".join(instruction("RUN"))
    assert "--no-install-recommends ffmpeg mkvtoolnix" in runs
    assert "rm -rf /var/lib/apt/lists/*" in runs
    assert "pip install --no-cache-dir" in runs and " -e " not in runs


def test_the_build_context_keeps_out_what_the_image_does_not_need() -> None:
    ignored = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", ".demo", "library", ".pytest_cache"} <= ignored
    for copy in instruction("COPY"):
        for source in copy.split()[:-1]:
            assert source not in ignored, f"COPY {source} is in .dockerignore"
            assert (ROOT / source).exists(), source


def _compose_client() -> list[str] | None:
    """`docker compose` (v2) when the docker client has the plugin, else a standalone
    `docker-compose` (Debian's package), else None. Neither needs a Docker engine for
    `config`."""
    docker = shutil.which("docker")
    if docker is not None:
        version = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, check=False
        )
        if version.returncode == 0:
            return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone is not None else None


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    client = _compose_client()
    if client is None:
        pytest.skip(
            "no compose client on this machine (neither `docker compose` nor `docker-compose`):"
            " `docker compose config` not run"
        )
    base = [*client, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE)]
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path)}
    refused = subprocess.run(
        [*base, "config", "--quiet"], capture_output=True, text=True, env=env, check=False
    )
    assert refused.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in refused.stderr
    env["GRAFANA_ADMIN_PASSWORD"] = "test"  # noqa: S105 - only to render the file
    for profile in ([], ["--profile", "tracing"], ["--profile", "workers"]):
        result = subprocess.run(
            [*base, *profile, "config", "--quiet"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert result.returncode == 0, result.stderr


def test_the_readme_documents_every_variable_of_the_compose_file() -> None:
    """README.md's "Prometheus and Grafana" names each variable the compose file reads,
    and no other VPO_/GRAFANA_ variable; its OTLP endpoint is the tracing service's."""
    text = (ROOT / "README.md").read_text()
    start = text.index("### Prometheus and Grafana")
    section = text[start : text.index("\n### ", start + 1)]
    read = {match["name"] for match in VARIABLE.finditer(COMPOSE_FILE.read_text())}
    named = set(re.findall(r"\b((?:VPO|GRAFANA)_[A-Z_]+)=?", section))
    assert read - named == set(), f"not in README.md: {sorted(read - named)}"
    assert named - read == set(), f"README.md names what compose does not read: {named - read}"
    endpoint = urlsplit(re.search(r"VPO_OTLP_ENDPOINT=(\S+)", section)[1])
    jaeger = services()[endpoint.hostname]
    assert "tracing" in jaeger["profiles"]
    assert endpoint.port in {container for _, _, container in published(jaeger)}
    trace_url = re.search(r"VPO_TRACE_URL='([^']+)'", section)[1]
    assert urlsplit(trace_url).port in {host for _, host, _ in published(jaeger)}
    assert "docs/metrics.md" in section


# --- The `workers` profile: Redis and a `vpo worker` next to VPO (docs/workers.md) ---

COLLECTOR_FILE = ROOT / "telemetry" / "otel-collector.yaml"


def test_the_workers_profile_runs_a_worker_of_the_same_image_on_the_same_library() -> None:
    stack = services()
    vpo, worker, redis = stack["vpo"], stack["worker"], stack["redis"]
    assert worker["build"] == vpo["build"], "the worker runs vpo's image"
    argv = [str(arg) for arg in worker["command"]]
    assert argv[:2] == ["vpo", "worker"]
    help_text = run_vpo("worker", "--help")
    assert help_text.returncode == 0, help_text.stderr
    for option in (arg for arg in argv if arg.startswith("--")):
        assert re.search(rf"(^|[\s,]){re.escape(option)}\b", help_text.stdout), option

    # The queue is the redis service, on Redis's own port (its command sets no other).
    queue = urlsplit(option_value(argv, "--queue"))
    assert (queue.scheme, queue.hostname, queue.port) == ("redis", "redis", 6379)
    assert "--port" not in redis["command"]
    # The server is the vpo service on the port the image's `vpo serve` listens on.
    server = urlsplit(option_value(argv, "--server"))
    assert server.hostname == "vpo" and server.port == int(option_value(dockerfile_cmd(), "--port"))
    assert {"redis", "vpo"} <= set(worker["depends_on"])

    # The library at the same path in both: the messages' paths need no --path-map.
    assert "--path-map" not in argv
    watched = option_value(dockerfile_cmd(), "--watch")
    library = {mount.target: mount for mount in mounts(worker)}[watched]
    served = {mount.target: mount for mount in mounts(vpo)}[watched]
    assert (library.source, library.read_only) == (served.source, False)

    # Its scratch database and spool (unsent runs) are on a named volume; so is the queue.
    database = option_value(argv, "--db")
    (data,) = [m for m in mounts(worker) if database.startswith(m.target + "/")]
    assert data.named and data.source != "vpo-data", "a volume of the worker's own"
    assert [m for m in mounts(redis) if m.target == "/data" and m.named]
    command = redis["command"]
    assert option_value(command, "--appendonly") == "yes"

    # One token, from the environment, read by both; empty (nothing taken) by default.
    token = vpo["environment"]["VPO_WORKER_TOKEN"]
    assert worker["environment"]["VPO_WORKER_TOKEN"] == token
    assert token.startswith("${VPO_WORKER_TOKEN") and with_defaults(token) == ""
    # Nothing published: only the compose network reaches Redis and the worker's metrics.
    assert not redis.get("ports") and not worker.get("ports")


def test_vpo_enqueues_on_the_redis_service_only_when_told(tmp_path: Path) -> None:
    """VPO_QUEUE (empty by default) is `vpo serve --queue`: the real `vpo serve` reads it
    (an empty one is no queue); the compose header's value is the worker's queue."""
    stack = services()
    queue = stack["vpo"]["environment"]["VPO_QUEUE"]
    assert queue.startswith("${VPO_QUEUE") and with_defaults(queue) == ""
    header = COMPOSE_FILE.read_text().split("\nservices:")[0]
    (documented,) = set(re.findall(r"VPO_QUEUE=(\S+)", header))
    assert documented == option_value([str(a) for a in stack["worker"]["command"]], "--queue")
    assert "--profile workers" in header
    assert not instruction("ENTRYPOINT"), "the image's CMD runs vpo itself"

    db = str(tmp_path / "vpo.db")
    # Set, it is a --queue: without --watch that is refused (exit 2) before anything starts.
    given = run_vpo("--db", db, "serve", "--port", "0", env={"VPO_QUEUE": documented})
    assert given.returncode == 2 and "--queue" in given.stderr, given.stderr
    # Empty, it is no queue at all: the same command is refused for another reason only
    # (--policy without --watch), never for a queue.
    empty = run_vpo("--db", db, "serve", "--port", "0", "--policy", "x", env={"VPO_QUEUE": ""})
    assert empty.returncode == 2 and "--queue" not in empty.stderr, empty.stderr


def test_prometheus_scrapes_the_worker_on_its_metrics_port_when_it_exists() -> None:
    stack = services()
    worker = stack["worker"]
    argv = [str(arg) for arg in worker["command"]]
    host, port = option_value(argv, "--metrics").rsplit(":", 1)
    assert host == "0.0.0.0"  # noqa: S104 - reached by Prometheus's container
    assert port in {str(exposed) for exposed in worker["expose"]}
    assert f"http://127.0.0.1:{port}/healthz" in worker["healthcheck"]["test"][-1]

    prometheus = stack["prometheus"]
    flags = dict(item.split("=", 1) for item in prometheus["command"] if "=" in item)
    config = yaml.safe_load(repo_path(in_container(prometheus, flags["--config.file"])).read_text())
    (job,) = config["scrape_configs"]  # the job the rules and the dashboard read
    assert job["static_configs"] == [{"targets": ["vpo:8321"]}]
    (discovery,) = job["dns_sd_configs"]
    # Found by DNS: the service's name resolves only while the profile runs it, so a
    # stack without workers has no worker target (no `up == 0`, no VPODown).
    assert discovery["names"] == ["worker"] and "worker" in stack
    assert (discovery["type"], discovery["port"]) == ("A", int(port))


def test_the_collector_fans_every_span_out_to_vpo_and_tempo() -> None:
    config = yaml.safe_load(COLLECTOR_FILE.read_text())
    service = config["service"]
    declared = {
        kind: set(config.get(kind) or {}) for kind in ("receivers", "processors", "exporters")
    }
    assert set(service.get("extensions", [])) == set(config["extensions"])
    for name, pipeline in service["pipelines"].items():
        for kind in declared:
            used = set(pipeline.get(kind, []))
            assert used <= declared[kind], f"{name}: undefined {kind} {used - declared[kind]}"
            assert used or kind == "processors", f"{name}: no {kind}"
    (traces,) = [p for name, p in service["pipelines"].items() if name.split("/")[0] == "traces"]
    assert traces["receivers"] == ["otlp"]
    assert set(config["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}
    for protocol in config["receivers"]["otlp"]["protocols"].values():
        assert protocol["auth"]["authenticator"] in config["extensions"]

    # VPO needs every span: batching only, no sampler or filter anywhere.
    assert [name.split("/")[0] for name in traces["processors"]] == ["batch"]
    assert not [
        name
        for name in declared["processors"]
        if name.split("/")[0] in {"probabilistic_sampler", "tail_sampling", "filter"}
    ]
    exporters = config["exporters"]
    (to_vpo,) = [name for name in traces["exporters"] if name.split("/")[0] == "otlphttp"]
    (to_tempo,) = [name for name in traces["exporters"] if name.split("/")[0] == "otlp"]
    vpo = exporters[to_vpo]
    assert vpo["endpoint"] == "${env:VPO_SERVER_URL}"
    assert vpo["headers"]["Authorization"] == "Bearer ${env:VPO_WORKER_TOKEN}"
    assert vpo["retry_on_failure"]["max_elapsed_time"] == 0  # never drops a run
    assert vpo["sending_queue"]["num_consumers"] == 1  # a run's root after its phases
    assert vpo["sending_queue"]["storage"] in config["extensions"]
    assert exporters[to_tempo]["endpoint"] == "tempo:4317"
    # The workers show the Collector the token it forwards to VPO.
    authenticator = config["extensions"]["bearertokenauth/workers"]
    assert authenticator["token"] == vpo["headers"]["Authorization"].split(" ", 1)[1]
    assert "no sampling" in COLLECTOR_FILE.read_text()
