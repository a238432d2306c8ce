"""Shared pieces of the benchmark: constants, child processes, CPU pinning, memory, the machine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent

# The same identities the test-suite uses (tests/harness.py, tests/fakes/slack.py); every
# credential here is fake and only ever sent to the local fakes.
SIGNING_SECRET = "8f742231b10e8888abcd99aaabbb85a5"  # noqa: S105
ALICE, BOB, CAROL = "U0ALICE01", "U0BOB0001", "U0CAROL01"
SINGLE_TEAM = "T0A1B2C3D"
SINGLE_BOT_TOKEN = "xoxb-fake-bot-token"  # noqa: S105
OAUTH_TEAM = "T0BENCH01"
OAUTH_BOT_TOKEN = "xoxb-fake-bench-team-token"  # noqa: S105
OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET = "111.222", "bench-client-secret"
MODELSLAB_KEY = "good-key"
WEBHOOK_TOKEN = "bench-webhook-token-7Tq9xLp2Vw4"  # noqa: S105
CHANNEL = "C0BENCH01"

SERVER_CORE = 0
LOAD_CORE = 1


# --- CPU pinning -----------------------------------------------------------------------------


def taskset_path() -> str | None:
    """The taskset binary, when there is one and the machine has at least two CPUs."""
    if (os.cpu_count() or 1) < 2:
        return None
    return shutil.which("taskset")


def pinned(argv: Sequence[str], core: int | None) -> list[str]:
    """``argv`` prefixed with ``taskset -c CORE`` when pinning is possible (else unchanged)."""
    tool = taskset_path()
    if core is None or tool is None:
        return list(argv)
    return [tool, "-c", str(core), *argv]


def pin_self(core: int) -> bool:
    """Pin this (orchestrator or load) process to one core; False when not possible."""
    if taskset_path() is None or not hasattr(os, "sched_setaffinity"):
        return False
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {core})
        return True
    return False


# --- processes -------------------------------------------------------------------------------


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment: what Python needs, the repository on the path, then ``extra``."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env = {**keep, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    env.update(extra or {})
    return {k: v for k, v in env.items() if v != ""}


def read_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (kB) of a live process from /proc/<pid>/status; {} when unreadable."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time (all threads) of a live process, from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rpartition(")")[2].split()
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Child:
    """A long-running child process (bot, reference server or fakes) with its output in a file."""

    name: str
    proc: asyncio.subprocess.Process
    spawned_at: float
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.returncode is None

    def memory(self) -> dict[str, int]:
        return read_status(self.pid)

    def cpu(self) -> float | None:
        return cpu_seconds(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def wait_healthy(
        self, url: str, *, any_status: bool = False, timeout: float = 60.0, interval: float = 0.01
    ) -> float:
        """Poll ``url`` until it answers (200, or anything with ``any_status``); return seconds
        since the process was spawned."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=1.0),
            connector=aiohttp.TCPConnector(force_close=True),
        ) as session:
            while True:
                if not self.alive():
                    raise RuntimeError(
                        f"{self.name} exited during start-up (code {self.proc.returncode}):\n"
                        f"{self.log_tail()}"
                    )
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    async with session.get(url) as resp:
                        await resp.read()
                        if any_status or resp.status == 200:
                            return time.monotonic() - self.spawned_at
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.name} not healthy within {timeout}s:\n{self.log_tail()}"
                    )
                await asyncio.sleep(interval)

    async def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; return the exit code."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout=grace)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode

    async def kill(self) -> None:
        """SIGKILL at once (the benchmark throws the process's database away afterwards)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


async def spawn(
    name: str,
    argv: Sequence[str],
    *,
    env: dict[str, str],
    cwd: Path,
    log_path: Path,
    core: int | None,
    stdin: int | None = asyncio.subprocess.DEVNULL,
    stdout_pipe: bool = False,
) -> Child:
    """Start a child pinned to ``core``; stderr (and stdout unless piped) go to ``log_path``."""
    log = log_path.open("ab")
    try:
        spawned = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *pinned(argv, core),
            env=env,
            cwd=cwd,
            stdin=stdin,
            stdout=asyncio.subprocess.PIPE if stdout_pipe else log,
            stderr=log,
        )
    finally:
        log.close()
    return Child(name, proc, spawned, log_path)


async def run_to_end(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    cwd: Path,
    core: int | None,
    stdin_data: bytes | None = None,
    timeout: float = 120.0,
) -> tuple[int, str, str]:
    """Run a command to completion; return (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *pinned(argv, core),
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE if stdin_data is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin_data), timeout=timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"{' '.join(argv)} did not finish within {timeout}s") from None
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def import_baseline(
    module: str, *, cwd: Path, pythonpath: str | None = None
) -> dict[str, int]:
    """RSS of ``python -c "import MODULE"``: VmHWM/VmRSS (kB) read by that process at its end."""
    code = (
        f"import {module}, pathlib, sys; "
        "sys.stdout.write(pathlib.Path('/proc/self/status').read_text())"
    )
    rc, out, err = await run_to_end(
        [sys.executable, "-c", code],
        env=child_env({"PYTHONPATH": pythonpath} if pythonpath else None),
        cwd=cwd,
        core=SERVER_CORE,
    )
    if rc != 0:
        raise RuntimeError(f"import {module} failed: {err}")
    result: dict[str, int] = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            result[key] = int(value.split()[0])
    return result


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- statistics ------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


# --- the machine -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """nproc, CPU model, memory, Python and library versions, and how processes are pinned."""
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    versions: dict[str, str] = {}
    from importlib import metadata

    for dist in (
        "slack_bolt",
        "slack_sdk",
        "aiohttp",
        "httpx",
        "SQLAlchemy",
        "aiosqlite",
        "psycopg",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "affinity_at_start": affinity,
        "cpu_model": cpu_model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "versions": versions,
        "taskset": taskset_path(),
    }
