"""A throwaway PostgreSQL server for the tests: Debian's package, in a temporary directory.

`PostgresServer.start(directory)` runs initdb and postgres from the newest
/usr/lib/postgresql/*/bin (or $PYWG_PG_BIN) as an unprivileged user (the
``postgres`` system user when run as root: the server refuses root),
listening on a unix socket in `directory` only (no TCP port is opened; the
port number only names the socket), durability off for speed. Each test
gets a fresh database (`new_database`), made from template1 in which the
citext extension is already installed. `unavailable()` says why there can
be none (the tests skip with that reason).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT = 30.0
_counter = itertools.count(1)


def _bin_dir() -> str | None:
    wanted = os.environ.get("PYWG_PG_BIN")
    if wanted:
        return wanted if os.path.isfile(os.path.join(wanted, "initdb")) else None
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    return os.path.dirname(found[-1]) if found else None


def _version(path: str) -> int:
    part = Path(path).parent.parent.name
    return int(part) if part.isdigit() else 0


def _user() -> str | None:
    """The user the server runs as: ourselves, or ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "missing"
    return "postgres"


def unavailable() -> str | None:
    """Why no PostgreSQL server can be started here (None: one can)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'pywg[postgresql]')"
    if _bin_dir() is None:
        return "PostgreSQL's server is not installed (apt-get install postgresql)"
    if _user() == "missing":
        return "running as root and there is no postgres user to run the server as"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    directory: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    databases: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, directory: Path) -> PostgresServer:
        bin_dir = _bin_dir()
        assert bin_dir is not None
        user = _user()
        directory.mkdir(parents=True, exist_ok=True)
        data = directory / "data"
        if user is not None:
            shutil.chown(directory, user)
        run_as = {"user": user} if user else {}
        subprocess.run(
            [f"{bin_dir}/initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-N"],
            check=True,
            capture_output=True,
            **run_as,  # type: ignore[call-overload]
        )
        port = _free_port()
        log = directory / "postgres.log"
        settings = {
            "listen_addresses": "",
            "unix_socket_directories": str(directory),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
        }
        argv = [f"{bin_dir}/postgres", "-D", str(data), "-p", str(port)]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        with open(log, "wb") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **run_as)  # type: ignore[call-overload]
        server = cls(directory, port, process, log)
        server._wait_ready()
        server.admin("CREATE EXTENSION IF NOT EXISTS citext", database="template1")
        return server

    def url(self, database: str = "postgres") -> str:
        return f"postgresql:///{database}?host={self.directory}&port={self.port}&user=postgres"

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log.read_text()[-2000:]}")
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def admin(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"pywg_{os.getpid()}_{next(_counter)}"
        self.admin(f"CREATE DATABASE {name}")
        self.databases.append(name)
        return self.url(name)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
