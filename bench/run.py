"""The orchestrator behind ``python -m bench``: fakes, servers, load, figures.

Everything runs as separate processes: the fakes (one process), each server under test (a fresh
process per scenario, pinned to the server core), the load (a fresh process per scenario, pinned
to the load core). The orchestrator itself runs on the load core and only waits, warms up and
reads /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp

from bench.common import (
    ALICE,
    BOB,
    CAROL,
    CHANNEL,
    LOAD_CORE,
    MODELSLAB_KEY,
    OAUTH_BOT_TOKEN,
    OAUTH_CLIENT_ID,
    OAUTH_CLIENT_SECRET,
    OAUTH_TEAM,
    REPO,
    SERVER_CORE,
    SIGNING_SECRET,
    SINGLE_BOT_TOKEN,
    SINGLE_TEAM,
    WEBHOOK_TOKEN,
    Child,
    child_env,
    free_port,
    import_baseline,
    machine,
    median,
    pin_self,
    run_to_end,
    spawn,
    taskset_path,
)
from bench.load import build_request, training_id

ALL_TARGETS = (
    "floor",
    "tutorial",
    "sqlite-single",
    "pg-single",
    "pg-split",
    "sqlite-oauth",
    "pg-oauth",
)
# pg-split: the web process (serve --no-worker) on the server core, its worker (python -m bot
# worker) on the other one, beside the load, the fakes and this orchestrator (2 cores).
WORKER_CORE = LOAD_CORE
ALL_SCENARIOS = ("grid", "throughput", "e2e", "crash", "trace")
# "crash" only runs on split targets (a worker process to kill); elsewhere it is skipped.
DEFAULT_SCENARIOS = ("grid", "throughput", "e2e", "crash")
TRACE_CELLS = (("refused", 1), ("allowed", 1), ("allowed", 50))
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
WARMUP_REQUESTS = 10


@dataclass
class Options:
    quick: bool = False
    targets: tuple[str, ...] = ALL_TARGETS
    scenarios: tuple[str, ...] = DEFAULT_SCENARIOS
    in_flight: tuple[int, ...] = (1, 50, 100, 200)
    latencies: tuple[float, ...] = (0.1, 5.0)
    duration: float = 3.0
    throughput_duration: float = 5.0
    throughput_warmup: float = 1.0
    throughput_in_flight: int = 50
    e2e_clicks: int = 30
    crash_in_flight: int = 10
    crash_requests: int = 30
    crash_modelslab_delay: float = 0.5
    crash_outcome_timeout: float = 120.0
    cap: float = 10.0
    max_requests: int = 50_000
    quick_requests: int = 20
    quick_in_flight: int = 10
    pg_url: str = DEFAULT_PG
    workdir: Path | None = None
    keep: bool = False
    json_out: Path | None = None
    bot_src: Path | None = None
    command: str = "python -m bench"


# --- the fakes -------------------------------------------------------------------------------


class Fakes:
    """The fakes process and its control routes."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.child: Child | None = None
        self.urls: dict[str, str] = {}
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.child = await spawn(
            "fakes",
            [sys.executable, "-m", "bench.fakes"],
            env=child_env(),
            cwd=REPO,
            log_path=self.workdir / "fakes.log",
            core=LOAD_CORE,
            stdout_pipe=True,
        )
        assert self.child.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.child.proc.stdout.readline(), timeout=60)
        except asyncio.TimeoutError:
            raise RuntimeError(f"the fakes did not start:\n{self.child.log_tail()}") from None
        if not line:
            raise RuntimeError(f"the fakes exited:\n{self.child.log_tail()}")
        self.urls = json.loads(line)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))

    @property
    def slack_api_url(self) -> str:
        return self.urls["slack_api_url"]

    @property
    def modelslab_api_url(self) -> str:
        return self.urls["modelslab_api_url"]

    @property
    def response_url_base(self) -> str:
        return self.urls["slack_root"] + "/response"

    @property
    def control_url(self) -> str:
        return self.urls["control_url"]

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        assert self._session is not None
        async with self._session.request(method, self.control_url + path, **kw) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def configure(self, **values: Any) -> None:
        await self._call("POST", "/control/config", json=values)

    async def reset(self, *, messages: bool = False) -> None:
        await self._call("POST", "/control/reset", params={"messages": "1" if messages else "0"})

    async def stats(self, *, detail: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "GET", "/control/stats", params={"detail": "1" if detail else "0"}
        )
        return result

    async def wait_outcomes(self, ids: list[str], timeout: float) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "POST", "/control/wait_outcomes", json={"training_ids": ids, "timeout": timeout}
        )
        return result

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self.child is not None:
            await self.child.stop(grace=5)


# --- what runs on the server core -----------------------------------------------------------


@dataclass
class Instance:
    """One running server process."""

    child: Child
    base_url: str
    start_seconds: float
    cleanup: list[Any] = field(default_factory=list)
    worker: Child | None = None  # pg-split: the worker process beside the web one
    database_url: str = ""

    @property
    def events_url(self) -> str:
        return self.base_url + "/slack/events"


class Target:
    """A server under test: how to start it, which team and users to send as."""

    name = ""
    label = ""
    import_module = ""
    team_id = SINGLE_TEAM
    allowed = (ALICE, BOB)
    refused = (CAROL,)
    has_outcomes = True

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.first_start: float | None = None

    async def prepare(self) -> None:
        """One-time set-up before the first launch."""

    async def finish(self) -> None:
        """Clean up what prepare() made."""

    async def launch(self, cell: str) -> Instance:
        raise NotImplementedError

    async def release(self, instance: Instance) -> None:
        await instance.child.kill()
        for step in instance.cleanup:
            await step()

    async def seed_notifications(self, instance: Instance, ids: list[str]) -> dict[str, list[str]]:
        """Training id → [channel, ts] of a posted notification with a Cancel button."""
        return {tid: [CHANNEL, f"1764201600.{i:06d}"] for i, tid in enumerate(ids)}

    def common_env(self) -> dict[str, str]:
        fakes = self.bench.fakes
        return {
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": fakes.slack_api_url,
            "MODELSLAB_API_URL": fakes.modelslab_api_url,
        }


class FloorTarget(Target):
    name = "floor"
    label = "floor"
    import_module = "bench.floor"
    has_outcomes = False

    async def launch(self, cell: str) -> Instance:
        port = free_port()
        child = await spawn(
            f"floor[{cell}]",
            [sys.executable, "-m", "bench.floor", "--port", str(port)],
            env=child_env(self.common_env()),
            cwd=REPO,
            log_path=self.bench.workdir / "floor.log",
            core=SERVER_CORE,
        )
        url = f"http://127.0.0.1:{port}"
        took = await child.wait_healthy(url + "/healthz")
        return Instance(child, url, took)


class TutorialTarget(Target):
    name = "tutorial"
    label = "tutorial"
    import_module = "bench.tutorial"

    async def launch(self, cell: str) -> Instance:
        port = free_port()
        env = {
            **self.common_env(),
            "SLACK_BOT_TOKEN": SINGLE_BOT_TOKEN,
            "MODELSLAB_API_KEY": MODELSLAB_KEY,
            "CANCEL_ALLOWED_USERS": f"{ALICE},{BOB}",
        }
        child = await spawn(
            f"tutorial[{cell}]",
            [sys.executable, "-m", "bench.tutorial", "--port", str(port)],
            env=child_env(env),
            cwd=REPO,
            log_path=self.bench.workdir / "tutorial.log",
            core=SERVER_CORE,
        )
        url = f"http://127.0.0.1:{port}"
        # Bolt's development server has no health route: any HTTP answer means it serves.
        took = await child.wait_healthy(url + "/", any_status=True)
        return Instance(child, url, took)


class BotTarget(Target):
    """``python -m bot serve`` on SQLite or PostgreSQL, single-workspace or OAuth."""

    import_module = "bot.runtime"

    def __init__(
        self, bench: Bench, db: str, mode: str, *, template: bool = True, split: bool = False
    ) -> None:
        super().__init__(bench)
        self.db = db
        self.mode = mode
        self.split = split  # web process (--no-worker) + a worker process
        self.name = f"{db}-{'split' if split else mode}"
        shape = "split (web core 0, worker core 1)" if split else mode
        self.label = f"ours {'SQLite' if db == 'sqlite' else 'PostgreSQL'} {shape}"
        self.team_id = OAUTH_TEAM if mode == "oauth" else SINGLE_TEAM
        self.use_template = template
        self.dir = bench.workdir / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.encryption_key = _fernet_key()
        self.webhook_token = WEBHOOK_TOKEN
        self.template_url: str | None = None
        self._cells = 0

    # -- databases --------------------------------------------------------------------------------

    async def _new_database(self, label: str, template: str | None = None) -> str:
        if self.db == "sqlite":
            path = self.dir / f"{label}.db"
            if template is not None:
                source = Path(template.removeprefix("sqlite:///"))
                shutil.copyfile(source, path)
                wal = source.with_name(source.name + "-wal")
                if wal.exists():
                    shutil.copyfile(wal, path.with_name(path.name + "-wal"))
            return f"sqlite:///{path}"
        return await self.bench.pg.create(label, template)

    async def _drop_database(self, url: str) -> None:
        if self.db == "sqlite":
            path = Path(url.removeprefix("sqlite:///"))
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    path.with_name(path.name + suffix).unlink()
            return
        await self.bench.pg.drop(url)

    # -- processes --------------------------------------------------------------------------------

    def env(self, database_url: str) -> dict[str, str]:
        env = {**self.common_env(), "DATABASE_URL": database_url}
        if self.bench.options.bot_src is not None:
            env["PYTHONPATH"] = f"{self.bench.options.bot_src}{os.pathsep}{REPO}"
        if self.mode == "single":
            env.update(
                {
                    "SLACK_BOT_TOKEN": SINGLE_BOT_TOKEN,
                    "MODELSLAB_API_KEY": MODELSLAB_KEY,
                    "CANCEL_ALLOWED_USERS": f"{ALICE},{BOB}",
                    "MODELSLAB_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
                }
            )
        else:
            env.update(
                {
                    "SLACK_CLIENT_ID": OAUTH_CLIENT_ID,
                    "SLACK_CLIENT_SECRET": OAUTH_CLIENT_SECRET,
                    "BOT_ENCRYPTION_KEY": self.encryption_key,
                }
            )
        return env

    async def _start(
        self, database_url: str, cell: str, probe: Path | None = None, *, split: bool = False
    ) -> Instance:
        port = free_port()
        module = "bench.probe" if probe is not None else "bot"
        env = self.env(database_url)
        if probe is not None:
            env["BENCH_PROBE_OUT"] = str(probe)
        serve = ["serve", "--no-worker"] if split else ["serve"]
        child = await spawn(
            f"bot[{self.name} {cell}]",
            [sys.executable, "-m", module, *serve, "--host", "127.0.0.1", "--port", str(port)],
            env=child_env(env),
            cwd=self.dir,
            log_path=self.dir / f"bot-{cell}.log",
            core=SERVER_CORE,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            took = await child.wait_healthy(url + "/healthz")
        except BaseException:
            await child.kill()
            raise
        instance = Instance(child, url, took)
        if split:
            try:
                worker = await self.start_worker(database_url, cell)
            except BaseException:
                await child.kill()
                raise
            instance.worker = worker
            instance.cleanup.append(worker.kill)
        return instance

    async def start_worker(self, database_url: str, cell: str) -> Child:
        """`python -m bot worker` on the worker core; healthy once its /healthz answers."""
        port = free_port()
        env = {**self.env(database_url), "PORT": str(port)}
        worker = await spawn(
            f"worker[{self.name} {cell}]",
            [sys.executable, "-m", "bot", "worker"],
            env=child_env(env),
            cwd=self.dir,
            log_path=self.dir / f"worker-{cell}.log",
            core=WORKER_CORE,
        )
        try:
            await worker.wait_healthy(f"http://127.0.0.1:{port}/healthz")
        except BaseException:
            await worker.kill()
            raise
        return worker

    async def _cli(self, database_url: str, *args: str, stdin: bytes | None = None) -> str:
        code, out, err = await run_to_end(
            [sys.executable, "-m", "bot", *args],
            env=child_env(self.env(database_url)),
            cwd=self.dir,
            core=SERVER_CORE,
            stdin_data=stdin,
        )
        if code != 0:
            raise RuntimeError(f"python -m bot {' '.join(args)} failed ({code}):\n{out}\n{err}")
        return out

    async def prepare(self) -> None:
        if not self.use_template:
            return
        url = await self._new_database("template")
        self.template_url = url
        if self.mode == "oauth":
            code = f"bench-code-{secrets.token_hex(4)}"
            await self.bench.fakes.configure(
                oauth_teams={
                    code: {
                        "team_id": OAUTH_TEAM,
                        "team_name": "Bench Team",
                        "bot_token": OAUTH_BOT_TOKEN,
                        "authed_user": ALICE,
                    }
                }
            )
        instance = await self._start(url, "first-start")
        self.first_start = instance.start_seconds
        try:
            if self.mode == "oauth":
                await _install(instance.base_url, code)
        finally:
            await instance.child.stop(grace=25)
        if self.mode == "oauth":
            await self._cli(url, "set-key", "--team", OAUTH_TEAM, stdin=MODELSLAB_KEY.encode())
            await self._cli(url, "allow", "--team", OAUTH_TEAM, ALICE, BOB)
            self.webhook_token = await self._rotate_webhook_token(url)

    async def _rotate_webhook_token(self, database_url: str) -> str:
        """The token an admin gets from App Home ("new webhook token"), made with the bot's code."""
        from bot.config import Purpose, load_settings
        from bot.crypto import SecretBox
        from bot.service.workspaces import Workspaces
        from bot.store import Store

        settings = load_settings(Purpose.SERVE, self.env(database_url))
        store = Store.from_url(settings.database_url)
        try:
            workspaces = Workspaces(
                store=store, box=SecretBox(settings.encryption_keys), settings=settings
            )
            return await workspaces.rotate_webhook_token(OAUTH_TEAM, by="bench")
        finally:
            await store.close()

    async def finish(self) -> None:
        if self.template_url is not None:
            await self._drop_database(self.template_url)
            self.template_url = None

    async def launch(self, cell: str, probe: Path | None = None) -> Instance:
        self._cells += 1
        label = f"c{self._cells}"
        url = await self._new_database(label, self.template_url)
        try:
            instance = await self._start(
                url, cell.replace(" ", "_").replace("@", "-"), probe, split=self.split
            )
        except BaseException:
            await self._drop_database(url)
            raise

        async def drop() -> None:
            await self._drop_database(url)

        instance.cleanup.append(drop)
        instance.database_url = url
        return instance

    async def seed_notifications(self, instance: Instance, ids: list[str]) -> dict[str, list[str]]:
        """Post a notification per training through the bot's own POST /notify."""
        found: dict[str, list[str]] = {}
        limit = asyncio.Semaphore(8)
        headers = {"Authorization": f"Bearer {self.webhook_token}"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

            async def one(tid: str) -> None:
                async with (
                    limit,
                    session.post(
                        instance.base_url + "/notify",
                        json={"training_id": tid, "channel": CHANNEL, "title": "bench run"},
                        headers=headers,
                    ) as resp,
                ):
                    body = await resp.json()
                    if resp.status != 200 or "ts" not in body:
                        raise RuntimeError(f"/notify {tid}: {resp.status} {body}")
                    found[tid] = [body["channel"], body["ts"]]

            await asyncio.gather(*(one(t) for t in ids))
        return found


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


async def _install(base_url: str, code: str) -> None:
    """Install the app into the fake workspace as a browser does (tests/system/test_oauth.py)."""
    async with aiohttp.ClientSession() as session:
        async with session.get(base_url + "/slack/install") as resp:
            page = await resp.text()
            if resp.status != 200:
                raise RuntimeError(f"/slack/install: {resp.status} {page[:200]}")
            cookie = resp.headers["Set-Cookie"].split(";", 1)[0]
        link = re.search(r'href="(https://slack\.com/oauth/v2/authorize\?[^"]+)"', page)
        if link is None:
            raise RuntimeError("no install link on /slack/install")
        query = parse_qs(urlsplit(html.unescape(link.group(1))).query)
        async with session.get(
            base_url + "/slack/oauth_redirect",
            params={"code": code, "state": query["state"][0]},
            headers={"Cookie": cookie},
        ) as resp:
            body = await resp.text()
            if resp.status != 200:
                raise RuntimeError(f"/slack/oauth_redirect: {resp.status} {body[:300]}")


class Postgres:
    """Databases the benchmark creates on the PostgreSQL server (and always drops)."""

    def __init__(self, admin_url: str, tag: str) -> None:
        self.admin_url = admin_url
        self.tag = tag
        self.created: list[str] = []

    def _conninfo(self) -> str:
        return self.admin_url.replace("postgres://", "postgresql://", 1)

    def _url(self, name: str) -> str:
        base, _, _ = self._conninfo().rpartition("/")
        return f"{base}/{name}"

    def _execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self._conninfo(), autocommit=True) as conn:
            conn.execute(sql)

    async def create(self, label: str, template_url: str | None) -> str:
        name = f"bench_{self.tag}_{label}".lower().replace("-", "_")
        sql = f'CREATE DATABASE "{name}"'
        if template_url is not None:
            sql += f' TEMPLATE "{template_url.rpartition("/")[2]}"'
        await asyncio.to_thread(self._execute, sql)
        self.created.append(name)
        return self._url(name)

    async def drop(self, url: str) -> None:
        name = url.rpartition("/")[2]
        await asyncio.to_thread(self._execute, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        with contextlib.suppress(ValueError):
            self.created.remove(name)

    async def drop_all(self) -> None:
        for name in list(self.created):
            with contextlib.suppress(Exception):
                await self.drop(self._url(name))


# --- the benchmark ---------------------------------------------------------------------------


class Bench:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.tag = secrets.token_hex(3)
        base = options.workdir or Path(tempfile.mkdtemp(prefix="bench-"))
        base.mkdir(parents=True, exist_ok=True)
        self.workdir = base
        self.fakes = Fakes(self.workdir)
        self.pg = Postgres(options.pg_url, self.tag)
        self._cell = 0

    def log(self, message: str) -> None:
        sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
        sys.stderr.flush()

    def next_tag(self) -> str:
        self._cell += 1
        return f"{self.tag}{self._cell:03d}"

    def make_target(self, name: str, *, template: bool = True) -> Target:
        if name == "floor":
            return FloorTarget(self)
        if name == "tutorial":
            return TutorialTarget(self)
        if name == "pg-split":
            return BotTarget(self, "pg", "single", template=template, split=True)
        db, _, mode = name.partition("-")
        return BotTarget(self, db, mode, template=template)

    async def run_load(self, spec: dict[str, Any]) -> dict[str, Any]:
        spec = {
            "signing_secret": SIGNING_SECRET,
            "response_url_base": self.fakes.response_url_base,
            "control_url": self.fakes.control_url,
            **spec,
        }
        path = self.workdir / f"spec-{spec['tag']}.json"
        path.write_text(json.dumps(spec))
        timeout = float(spec.get("duration", 0)) + float(spec.get("cap", 10)) + 300
        code, out, err = await run_to_end(
            [sys.executable, "-m", "bench.load", str(path)],
            env=child_env(),
            cwd=REPO,
            core=LOAD_CORE,
            timeout=timeout,
        )
        if code != 0:
            raise RuntimeError(f"the load process failed ({code}):\n{err[-3000:]}")
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result

    async def warm_up(self, target: Target, instance: Instance) -> None:
        """A few refused requests (no ModelsLab call), so connections and caches are warm."""
        spec = {
            "user_ids": list(target.refused),
            "team_id": target.team_id,
            "signing_secret": SIGNING_SECRET,
            "response_url_base": self.fakes.response_url_base,
        }
        tag = f"w{self.tag}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            for i in range(WARMUP_REQUESTS):
                kind = "command" if i % 2 == 0 else "list_click"
                body, headers = build_request(spec, i, kind, training_id(tag, i))
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with session.post(instance.events_url, data=body, headers=headers) as r:
                        await r.read()

    async def load_spec(
        self, target: Target, instance: Instance, *, users: tuple[str, ...], **values: Any
    ) -> dict[str, Any]:
        return {
            "mode": "load",
            "url": instance.events_url,
            "team_id": target.team_id,
            "user_ids": list(users),
            "tag": self.next_tag(),
            "cap": self.options.cap,
            "max_requests": self.options.max_requests,
            **values,
        }

    # -- one target -------------------------------------------------------------------------------

    async def measure(self, target: Target) -> dict[str, Any]:
        o = self.options
        res: dict[str, Any] = {"label": target.label, "starts": [], "grid": {}, "throughput": {}}
        self.log(f"{target.label}: import baseline")
        pythonpath = None
        if isinstance(target, BotTarget) and o.bot_src is not None:
            pythonpath = f"{o.bot_src}{os.pathsep}{REPO}"
        res["import"] = await import_baseline(target.import_module, cwd=REPO, pythonpath=pythonpath)
        self.log(f"{target.label}: preparing")
        await target.prepare()
        res["first_start"] = target.first_start
        load_hwm = 0

        async def launch(cell: str) -> Instance:
            await self.fakes.reset(messages=True)
            instance = await target.launch(cell)
            res["starts"].append(instance.start_seconds)
            if "idle" not in res:
                await asyncio.sleep(1.0)
                res["idle"] = instance.child.memory()
            await self.warm_up(target, instance)
            await self.fakes.reset()
            return instance

        if "grid" in o.scenarios:
            for latency in o.latencies:
                await self.fakes.configure(modelslab_delay=latency)
                for n in o.in_flight:
                    cell = f"{n}@{latency:g}"
                    self.log(f"{target.label}: {n} in flight, ModelsLab {latency:g} s")
                    instance = await launch(cell)
                    try:
                        spec = await self.load_spec(
                            target,
                            instance,
                            users=target.allowed,
                            concurrency=n,
                            duration=o.duration,
                        )
                        cpu_before = instance.child.cpu()
                        result = await self.run_load(spec)
                        _add_cpu(result, cpu_before, instance.child.cpu())
                        memory = instance.child.memory()
                        result["hwm_kb"] = memory.get("VmHWM")
                        if n == max(o.in_flight):
                            load_hwm = max(load_hwm, memory.get("VmHWM", 0))
                        result["fakes"] = await self.fakes.stats()
                    finally:
                        await target.release(instance)
                    res["grid"][cell] = result
                    self.log(
                        f"    n={result['n']} p50={_ms(result['p50'])} p99={_ms(result['p99'])} "
                        f"max={_ms(result['max'])} >3s={result['over_3s_or_failed']} "
                        f"cpu/req={result.get('server_cpu_per_request_ms', 0):.2f}ms "
                        f"{result['answers']}"
                    )
            res["load_hwm_kb"] = load_hwm or None

        if "throughput" in o.scenarios:
            await self.fakes.configure(modelslab_delay=min(o.latencies))
            for path, users in (("allowed", target.allowed), ("refused", target.refused)):
                self.log(f"{target.label}: sustained acks/s, {path} path")
                instance = await launch(f"throughput-{path}")
                try:
                    spec = await self.load_spec(
                        target,
                        instance,
                        users=users,
                        concurrency=o.throughput_in_flight,
                        duration=o.throughput_duration,
                        warmup=o.throughput_warmup,
                    )
                    cpu_before = instance.child.cpu()
                    result = await self.run_load(spec)
                    _add_cpu(result, cpu_before, instance.child.cpu())
                    result["fakes"] = await self.fakes.stats()
                finally:
                    await target.release(instance)
                res["throughput"][path] = result
                self.log(
                    f"    {result['rate']:.0f} acks/s, server cpu/req="
                    f"{result.get('server_cpu_per_request_ms', 0):.2f}ms {result['answers']}"
                )

        if "e2e" in o.scenarios and target.has_outcomes:
            latency = min(o.latencies)
            await self.fakes.configure(modelslab_delay=latency)
            self.log(f"{target.label}: end-to-end, {o.e2e_clicks} clicks one at a time")
            instance = await launch("e2e")
            try:
                tag = self.next_tag()
                ids = [training_id(tag, i) for i in range(o.e2e_clicks)]
                notes = await target.seed_notifications(instance, ids)
                await asyncio.sleep(0.3)
                await self.fakes.reset()
                result = await self.run_load(
                    {
                        "mode": "e2e",
                        "url": instance.events_url,
                        "team_id": target.team_id,
                        "user_ids": list(target.allowed),
                        "tag": tag,
                        "training_ids": ids,
                        "notifications": notes,
                        "modelslab_delay": latency,
                    }
                )
                # Reports that follow the outcome (the notification's final update) arrive now.
                await asyncio.sleep(1.0)
                result["fakes"] = await self.fakes.stats(detail=True)
            finally:
                await target.release(instance)
            res["e2e"] = _per_cancellation(result, ids)
            self.log(
                f"    overhead p50={_ms(result['overhead_p50'])} p99={_ms(result['overhead_p99'])}"
                f" (click→ModelsLab {_ms(result.get('click_to_modelslab_p50'))}, "
                f"ModelsLab answer→reply {_ms(result.get('modelslab_to_reply_p50'))})"
                f" lost={len(result['lost'])} slack/cancel={res['e2e']['slack_per_cancellation']}"
            )
        if "crash" in o.scenarios and isinstance(target, BotTarget) and target.split:
            res["crash"] = await self.crash(target, launch)
        if "trace" in o.scenarios and isinstance(target, BotTarget):
            res["trace"] = await self.trace(target)
        await target.finish()
        return res

    async def crash(
        self, target: BotTarget, launch: Callable[[str], Awaitable[Instance]]
    ) -> dict[str, Any]:
        """kill -9 the worker mid-load, start it again: is every outcome posted, once called?

        A first batch of claims is sent; once the fake ModelsLab has received a third of its
        cancel calls (so calls are in flight and claims wait), the worker gets SIGKILL, a second
        batch is claimed while no worker runs, then a new worker starts on the same database.
        Rows the dead worker held wait for their lease to expire (45 s) before it is retaken.
        """
        o = self.options
        await self.fakes.configure(modelslab_delay=o.crash_modelslab_delay)
        self.log(
            f"{target.label}: crash run, 2 x {o.crash_requests} claims at {o.crash_in_flight} in"
            f" flight, ModelsLab {o.crash_modelslab_delay:g} s, worker killed (SIGKILL) mid-work"
        )
        instance = await launch("crash")
        try:
            assert instance.worker is not None

            async def batch() -> dict[str, Any]:
                spec = await self.load_spec(
                    target,
                    instance,
                    users=target.allowed,
                    concurrency=o.crash_in_flight,
                    duration=60.0,
                    max_requests=o.crash_requests,
                    return_ids=True,
                )
                return await self.run_load(spec)

            first = await batch()
            wanted = max(len(first["ok_ids"]) // 3, 1)
            deadline = time.monotonic() + 60
            while True:
                before_kill = await self.fakes.stats()
                if before_kill["modelslab_cancel_calls"] >= wanted or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.01)
            killed_pid = instance.worker.pid
            await instance.worker.kill()
            killed_code = instance.worker.proc.returncode
            # After the SIGKILL no call can start any more: these are every call the dead worker
            # began, the only ones design §6 lets recovery send once more.
            at_kill = await self.fakes.stats(detail=True)
            called_before_kill = set(at_kill.get("modelslab_cancel_by_training", {}))
            second = await batch()
            restart_at = time.monotonic()
            worker = await target.start_worker(instance.database_url, "crash-restart")
            restart_seconds = time.monotonic() - restart_at
            instance.worker = worker
            instance.cleanup.append(worker.kill)
            ok_ids: list[str] = first["ok_ids"] + second["ok_ids"]
            started = time.monotonic()
            outcomes = await self.fakes.wait_outcomes(ok_ids, timeout=o.crash_outcome_timeout)
            all_in_seconds = time.monotonic() - started
            await asyncio.sleep(1.0)
            stats = await self.fakes.stats(detail=True)
        finally:
            await target.release(instance)
        by_training = stats.get("modelslab_cancel_by_training", {})
        per_cancel = [by_training.get(t, 0) for t in ok_ids]
        calls: dict[str, int] = {}
        for c in per_cancel:
            calls[str(c)] = calls.get(str(c), 0) + 1
        out = {
            "acks": len(ok_ids),
            "acks_over_3s_or_failed": first["over_3s_or_failed"] + second["over_3s_or_failed"],
            "killed_pid": killed_pid,
            "killed_exit_code": killed_code,
            "modelslab_calls_before_kill": before_kill["modelslab_cancel_calls"],
            "worker_restart_seconds": restart_seconds,
            "outcomes_lost": outcomes["missing"],
            "last_outcome_after_restart_seconds": all_in_seconds,
            "modelslab_calls_per_cancellation": calls,
            "modelslab_cancel_calls_total": stats.get("modelslab_cancel_calls"),
            "cancellations_called_more_than_once": sorted(
                t for t, c in zip(ok_ids, per_cancel, strict=True) if c > 1
            ),
            # Design §6: exactly one call, except one re-send of a call the crash interrupted.
            "cancellations_called_beyond_design": sorted(
                t
                for t, c in zip(ok_ids, per_cancel, strict=True)
                if c != 1 and not (c == 2 and t in called_before_kill)
            ),
        }
        self.log(
            f"    acks={out['acks']} lost={len(out['outcomes_lost'])} "
            f"ModelsLab calls per cancellation {calls} "
            f"(killed after {out['modelslab_calls_before_kill']} calls; all outcomes in "
            f"{all_in_seconds:.1f} s after the restart)"
        )
        return out

    async def trace(self, target: BotTarget) -> dict[str, Any]:
        """Probed runs: where the milliseconds of one ack go (bench/probe.py)."""
        o = self.options
        await self.fakes.configure(modelslab_delay=min(o.latencies))
        out: dict[str, Any] = {}
        for path, n in TRACE_CELLS:
            cell = f"{path}@{n}"
            self.log(f"{target.label}: probed run, {path} path, {n} in flight")
            probe = target.dir / f"probe-{cell.replace('@', '-')}.jsonl"
            await self.fakes.reset(messages=True)
            instance = await target.launch(f"trace-{cell}", probe=probe)
            try:
                await self.warm_up(target, instance)
                probe.write_text("")
                await self.fakes.reset()
                spec = await self.load_spec(
                    target,
                    instance,
                    users=target.allowed if path == "allowed" else target.refused,
                    concurrency=n,
                    duration=o.duration,
                )
                result = await self.run_load(spec)
                await asyncio.sleep(0.2)
            finally:
                await target.release(instance)
            records = [json.loads(line) for line in probe.read_text().splitlines() if line]
            out[cell] = {"client_p50": result["p50"], "n": result["n"], **trace_summary(records)}
        return out

    # -- the quick smoke variant ------------------------------------------------------------------

    async def quick(self) -> dict[str, Any]:
        o = self.options
        target = self.make_target("sqlite-single", template=False)
        assert isinstance(target, BotTarget)
        await self.fakes.configure(modelslab_delay=0.1)
        await self.fakes.reset(messages=True)
        instance = await target.launch("quick")
        try:
            await self.warm_up(target, instance)
            await self.fakes.reset()
            spec = await self.load_spec(
                target,
                instance,
                users=target.allowed,
                concurrency=o.quick_in_flight,
                duration=60.0,
                max_requests=o.quick_requests,
                return_ids=True,
            )
            result = await self.run_load(spec)
            outcomes = await self.fakes.wait_outcomes(result["ok_ids"], timeout=30.0)
            await asyncio.sleep(0.5)
            stats = await self.fakes.stats(detail=True)
            memory = instance.child.memory()
            code = await instance.child.stop(grace=25)
        finally:
            await target.release(instance)
        by_training = stats["modelslab_cancel_by_training"]
        ok_ids = result.pop("ok_ids")
        sent = result.pop("sent_ids")
        per_cancel = [by_training.get(t, 0) for t in ok_ids]
        methods = stats["slack_methods"]
        n = max(len(ok_ids), 1)
        return {
            "mode": "quick",
            "target": target.label,
            "requests": len(sent),
            "in_flight": o.quick_in_flight,
            "start_seconds": instance.start_seconds,
            "load": result,
            "acks_over_3s_or_failed": result["over_3s_or_failed"],
            "max_ack_seconds": result["max"],
            "outcomes_lost": outcomes["missing"],
            "modelslab_calls_per_cancellation": per_cancel,
            "modelslab_cancel_calls_total": stats["modelslab_cancel_calls"],
            "slack_calls_per_cancellation": {
                k: round(v / n, 2) for k, v in sorted(methods.items())
            },
            "hwm_kb": memory.get("VmHWM"),
            "exit_code": code,
        }


def trace_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Median milliseconds per segment of the probed requests (bench/probe.py records)."""

    def med(values: list[float]) -> float | None:
        return median(values) * 1000 if values else None

    segments: dict[str, list[float]] = {}
    before_ack: dict[str, list[float]] = {}
    after_ack: dict[str, list[float]] = {}
    for r in records:
        m = r["marks"]
        if not all(k in m for k in ("dispatch", "listener", "ack", "ack_end", "dispatch_end")):
            continue
        for name, value in (
            ("web layer before Bolt (read, verify, parse)", m["dispatch"]),
            ("Bolt: middleware, authorize, start the listener", m["listener"] - m["dispatch"]),
            ("listener until ack()", m["ack"] - m["listener"]),
            ("ack() → Bolt returns the answer", m["dispatch_end"] - m["ack_end"]),
            ("web layer after Bolt (response)", r["end"] - m["dispatch_end"]),
            ("handler total", r["end"]),
        ):
            segments.setdefault(name, []).append(value)
        pre: dict[str, float] = {}
        post: dict[str, float] = {}
        for name, start, took in r["calls"]:
            bucket = pre if start < m["ack"] else post
            bucket[name] = bucket.get(name, 0.0) + took
        names = {n for n, _, _ in r["calls"]}
        for name in names:
            before_ack.setdefault(name, []).append(pre.get(name, 0.0))
            after_ack.setdefault(name, []).append(post.get(name, 0.0))

    def mean(values: list[float]) -> float:
        return sum(values) * 1000 / max(len(segments.get("handler total", [])), 1)

    return {
        "requests": len(records),
        "segments": {k: med(v) for k, v in segments.items()},
        # Calls: mean milliseconds per request (a call some requests do not make counts as 0).
        "before_ack": {k: mean(v) for k, v in sorted(before_ack.items()) if mean(v)},
        "after_ack": {k: mean(v) for k, v in sorted(after_ack.items()) if mean(v)},
    }


def _add_cpu(result: dict[str, Any], before: float | None, after: float | None) -> None:
    """Server CPU seconds (user + system, all threads) during the load, and per request."""
    if before is None or after is None:
        return
    result["server_cpu_s"] = after - before
    result["server_cpu_per_request_ms"] = (after - before) * 1000 / max(result["n"], 1)


def _per_cancellation(result: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    """Slack and ModelsLab calls per cancellation, from the fakes' records of the e2e run."""
    fakes = result["fakes"]
    n = max(len(ids), 1)
    methods: dict[str, int] = fakes["slack_methods"]
    by_training = fakes.get("calls_by_training", {})
    per_id = [sum(by_training.get(t, {}).values()) for t in ids]
    cancels = fakes.get("modelslab_cancel_by_training", {})
    ml_per_id = [cancels.get(t, 0) for t in ids]
    return {
        "clicks": len(ids),
        "lost": result["lost"],
        "statuses": result["statuses"],
        "overhead_p50": result["overhead_p50"],
        "overhead_p99": result["overhead_p99"],
        "overhead_max": result["overhead_max"],
        "ack_p50": result["ack_p50"],
        "click_to_modelslab_p50": result.get("click_to_modelslab_p50"),
        "modelslab_to_reply_p50": result.get("modelslab_to_reply_p50"),
        "slack_methods_per_cancellation": {k: round(v / n, 2) for k, v in sorted(methods.items())},
        "slack_per_cancellation": round(sum(methods.values()) / n, 2),
        "slack_per_id_distinct": sorted(set(per_id)),
        "response_posts_per_cancellation": round(fakes["response_posts"] / n, 2),
        "modelslab_per_cancellation": round(fakes["modelslab_cancel_calls"] / n, 2),
        "modelslab_per_id_distinct": sorted(set(ml_per_id)),
        "modelslab_other_calls": fakes["modelslab_calls"] - fakes["modelslab_cancel_calls"],
    }


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}ms"


async def run(options: Options) -> dict[str, Any]:
    """Run the benchmark and return every figure (the caller prints the table)."""
    pinned_self = pin_self(LOAD_CORE)
    bench = Bench(options)
    info = machine()
    info["pinning"] = (
        f"taskset: servers on core {SERVER_CORE}; load, fakes and this orchestrator on core "
        f"{LOAD_CORE} (pg-split: its worker process too)"
        if taskset_path() and pinned_self
        else "not pinned (taskset missing or fewer than 2 CPUs)"
    )
    out: dict[str, Any] = {
        "command": options.command,
        "machine": info,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "options": {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in options.__dict__.items()
            if k not in ("workdir", "json_out")
        },
        "workdir": str(bench.workdir),
        "loadavg_start": _loadavg(),
        "code": _code_version(options.bot_src),
    }
    await bench.fakes.start()
    try:
        if options.quick:
            out["quick"] = await bench.quick()
        else:
            out["targets"] = {}
            for name in options.targets:
                target = bench.make_target(name)
                try:
                    out["targets"][name] = await bench.measure(target)
                except Exception as exc:  # noqa: BLE001 - one broken target must not end the run
                    bench.log(f"{target.label}: FAILED: {exc}")
                    out["targets"][name] = {
                        "label": target.label,
                        "error": f"{type(exc).__name__}: {exc}"[:2000],
                        "starts": [],
                    }
                finally:
                    with contextlib.suppress(Exception):
                        await target.finish()
    finally:
        await bench.fakes.stop()
        await bench.pg.drop_all()
        if not options.keep and options.workdir is None:
            shutil.rmtree(bench.workdir, ignore_errors=True)
    out["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    out["loadavg_end"] = _loadavg()
    out["median_start"] = {
        name: median(t["starts"]) for name, t in out.get("targets", {}).items() if t["starts"]
    }
    return out


def _code_version(bot_src: Path | None) -> str:
    """Which bot was measured: commit, and the files of bot/ changed since (a moving tree)."""
    import subprocess

    root = bot_src or REPO
    try:
        head = subprocess.run(  # noqa: S603 - fixed git arguments
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(  # noqa: S603 - fixed git arguments
            ["git", "-C", str(root), "status", "--porcelain", "--", "bot"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.split("\n")
    except OSError:
        return "unknown (no git)"
    changed = sorted(line[3:] for line in dirty if line.strip())
    if not head:
        return f"{root} (not a git checkout)"
    return f"commit {head}" + (
        f" + uncommitted changes in {', '.join(changed)}" if changed else " (clean bot/)"
    )


def _loadavg() -> str:
    """The 1, 5 and 15 minute load averages (other work on the machine skews every figure)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def default_pg_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL") or DEFAULT_PG
