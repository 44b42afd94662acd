"""A throwaway PostgreSQL server on loopback, for tests and for instructors trying a shared gradebook.

    python -m utils.instructor.pgserver start [--dir DIR] [--port PORT]   # prints the db_url
    python -m utils.instructor.pgserver stop --dir DIR

    db_url=$(python -m utils.instructor.pgserver start --dir /tmp/pg)
    python -m utils.instructor.parallel deformable_conv --db-url "$db_url"

It runs ``initdb`` and ``pg_ctl`` from the PostgreSQL server binaries (``/usr/lib/postgresql/<v>/bin``
or ``PATH``; Debian package ``postgresql``), with trust authentication, listening on 127.0.0.1
only, fsync off (the data is thrown away). PostgreSQL refuses to run as root: as root the
server runs as the unprivileged user ``nobody`` (or ``PGSERVER_USER``), which owns the data folder.
"""
from __future__ import annotations

import argparse
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .loopback import free_port

DATABASE = "gradebook"


class ServerUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def find_bindir() -> Path:
    """The folder holding initdb/pg_ctl/postgres (newest version first)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(p.split("/")[-3]) if p.split("/")[-3].isdigit() else 0)
    if candidates:
        return Path(candidates[-1]).parent
    raise ServerUnavailable("PostgreSQL server binaries (initdb, pg_ctl) not found: install the Debian "
                            "package `postgresql` (apt-get install postgresql) or put them on PATH")


class PostgresServer:
    """``with PostgresServer() as pg: pg.db_url`` — a fresh server in a temporary folder."""

    def __init__(self, folder: str | os.PathLike | None = None, port: int | None = None, user: str | None = None):
        self.bindir = find_bindir()
        self.folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="course-pg-"))
        self.port = port or free_port()
        self.data = self.folder / "data"
        self.socket_dir = self.folder / "socket"
        self.logfile = self.folder / "server.log"
        self.run_as = None
        if os.geteuid() == 0:
            self.run_as = pwd.getpwnam(user or os.environ.get("PGSERVER_USER", "nobody"))

    # ------------------------------------------------------------------ helpers
    @property
    def db_url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        kwargs = {}
        env = dict(os.environ, LC_ALL="C", LANG="C", HOME=str(self.folder))
        if self.run_as is not None:
            kwargs = dict(user=self.run_as.pw_uid, group=self.run_as.pw_gid, extra_groups=[])
        proc = subprocess.run([str(self.bindir / args[0]), *args[1:]], env=env, cwd=self.folder, text=True,
                              capture_output=True, timeout=timeout, **kwargs)
        if check and proc.returncode != 0:
            log = self.logfile.read_text()[-2000:] if self.logfile.exists() else ""
            raise RuntimeError(f"{args[0]} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}{log}")
        return proc

    def _own(self, path: Path) -> None:
        if self.run_as is not None:
            os.chown(path, self.run_as.pw_uid, self.run_as.pw_gid)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> PostgresServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o755)
        self.socket_dir.mkdir(exist_ok=True)
        for path in (self.folder, self.socket_dir):
            self._own(path)
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                      "--no-sync", "--no-instructions")
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.socket_dir} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.logfile), "-o", options)
        self._create_database()
        return self

    def _create_database(self) -> None:
        import psycopg2
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
                if cur.fetchone() is None:
                    cur.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            conn.close()

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.data), check=False)

    def remove(self) -> None:
        self.stop("immediate")   # no checkpoint: the data is deleted anyway
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.remove()
            raise

    def __exit__(self, *exc) -> None:
        self.remove()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.instructor.pgserver",
                                     description="Start or stop a throwaway PostgreSQL server on 127.0.0.1.")
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", default=None, help="server folder (start: default a new temporary folder)")
    parser.add_argument("--port", type=int, default=None, help="port (start: default a free one)")
    args = parser.parse_args(argv)
    if args.action == "stop":
        if not args.dir:
            parser.error("stop needs --dir")
        PostgresServer(args.dir, port=1).remove()
        return 0
    try:
        server = PostgresServer(args.dir, args.port).start()
    except ServerUnavailable as why:
        print(why, file=sys.stderr)
        return 2
    print(server.db_url)
    print(f"# stop with: python -m utils.instructor.pgserver stop --dir {server.folder}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
