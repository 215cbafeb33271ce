"""Real servers for the tests that need one, on localhost only: PostgreSQL from Debian's package.

:class:`PostgresServer` runs its own cluster in a temporary folder (``initdb`` with trust
authentication for local connections, a free port, listening on 127.0.0.1 only) and can be stopped
and started again, as the fault drills need. Where the binaries are missing and the tests run as root
with apt-get (the CI machine), :func:`postgres_binaries` installs the ``postgresql`` package once;
otherwise it fails naming the package, so a test that needs the server never passes without it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _find_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def postgres_binaries() -> Path:
    """The folder of ``initdb`` and ``pg_ctl``, installing Debian's ``postgresql`` when missing (as root)."""
    found = _find_bin()
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True, env=env, capture_output=True)
        found = _find_bin()
    if found is None:
        pytest.fail("PostgreSQL's server binaries (initdb, pg_ctl) are missing: install Debian's `postgresql` "
                    "package (apt-get install postgresql)")
    return found


class PostgresServer:
    """A throwaway PostgreSQL cluster in a temporary folder, reachable at ``127.0.0.1:<port>`` as user
    ``postgres``; :meth:`remove` stops it and deletes the folder.

    The folder is made with :func:`tempfile.mkdtemp` rather than under pytest's own temporary folders, which
    are private to the user running the tests (root on CI) while the server runs as ``postgres``.
    """

    def __init__(self) -> None:
        self.bin = postgres_binaries()
        self.root = Path(tempfile.mkdtemp(prefix="selfsup-postgres-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:  # initdb refuses to run as root: the cluster belongs to the `postgres` user
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr or proc.stdout}")
        return proc

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast`` disconnects clients and shuts down cleanly; ``immediate`` is a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        """Stop the server if it runs, and delete its folder."""
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, name: str) -> str:
        """A new database and its SQLAlchemy URL."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"


class MlflowServer:
    """``mlflow server`` on 127.0.0.1, its runs in ``backend`` (a database URL) and its artifacts served from a
    local folder. :meth:`stop` and :meth:`start` take it away and bring it back on the same port (a fault
    drill); :meth:`remove` stops it for good."""

    def __init__(self, backend: str, root: Path) -> None:
        self.backend = backend
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.artifacts = Path(root) / "artifacts"
        self.log = open(Path(root) / "mlflow-server.log", "a")  # noqa: SIM115 - open while the server runs
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        import sys
        import time
        import urllib.request

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend, "--artifacts-destination",
             self.artifacts.as_uri(), "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.remove()
        raise RuntimeError(f"mlflow server did not answer on {self.uri} within 180 s; see {self.log.name}")

    def stop(self) -> None:
        """Stop the server and every process it started (uvicorn's workers)."""
        import signal

        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def remove(self) -> None:
        self.stop()
        self.log.close()
