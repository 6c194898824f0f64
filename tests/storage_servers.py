"""Real redis-server and PostgreSQL (Debian's packages) for tests, on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self, directory: Path, *, appendonly: bool = False) -> None:
        self.port = free_port()
        self.dir = directory
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(b"FLUSHALL\r\n")
            s.recv(16)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


def require_redis() -> None:
    """Skip without redis-server locally; fail in CI, so a green CI covered Redis."""
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is required in CI (apt-get install redis-server)")
        pytest.skip("redis-server not installed")


class PostgresServer:
    """A throwaway PostgreSQL cluster (Debian's package) in a temporary directory on a free
    loopback port, stopped by PID. As root it runs as the ``postgres`` system user, since
    PostgreSQL refuses to run as root."""

    def __init__(self) -> None:
        self.port = free_port()
        # its own directory under /tmp: pytest's temporary root is private to the test user
        self.dir = Path(tempfile.mkdtemp(prefix="opscore-pg-"))
        self.data = self.dir / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        self.user = "postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(
            list(args), check=True, user=self.user, capture_output=True, timeout=120, cwd=self.dir
        )

    def start(self) -> PostgresServer:
        if self.user is not None:
            shutil.chown(self.dir, self.user)
        if not self.data.exists():
            self._run(
                pg_binary("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                "--no-sync", "-E", "UTF8",
            )  # fmt: skip
        return self.resume()

    def resume(self) -> PostgresServer:
        """Start the server on the existing data directory (after ``stop`` or ``kill``)."""
        # fsync off: a killed server loses nothing it committed (the kernel still has it),
        # only a machine crash would, and tests do not survive those anyway
        args = [
            pg_binary("postgres"), "-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port),
            "-k", str(self.dir), "-c", "fsync=off", "-c", "max_connections=200",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args,
            user=self.user,
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "server.log", "ab"),  # noqa: SIM115
            start_new_session=True,  # its own group, so kill() reaches every backend
            cwd=self.dir,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"postgres exited: {(self.dir / 'server.log').read_text()[-2000:]}"
                )
            if self._ready():
                return self
            time.sleep(0.1)
        raise RuntimeError("postgres did not start")

    def _ready(self) -> bool:
        try:
            result = subprocess.run(
                ["psql", self.url, "-Atc", "SELECT 1"], capture_output=True, timeout=5
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return result.returncode == 0

    def sql(self, statement: str) -> str:
        result = subprocess.run(
            ["psql", self.url, "-v", "ON_ERROR_STOP=1", "-Atc", statement],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return result.stdout.strip()

    def flush(self) -> None:
        """An empty database: every Ops-Core table dropped (the next open migrates afresh)."""
        self.sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster, by PID)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
            self.proc = None

    def kill(self) -> None:
        """SIGKILL to the postmaster and every backend, as a crash would."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None
            # the backends die with it; wait until the port is free again
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _listening(self.port):
                time.sleep(0.05)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def pg_binary(name: str) -> str:
    """initdb and postgres live in /usr/lib/postgresql/<major>/bin on Debian, off PATH."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return name


def postgres_missing() -> bool:
    return shutil.which(pg_binary("initdb")) is None or shutil.which("psql") is None


def require_postgres() -> None:
    """Skip without PostgreSQL locally; fail in CI, so a green CI covered PostgreSQL."""
    if postgres_missing():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is required in CI (apt-get install postgresql)")
        pytest.skip("PostgreSQL not installed")
