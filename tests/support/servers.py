"""Start real servers (Mosquitto, PostgreSQL) for tests and benchmarks.

A missing binary skips a test on a developer's machine but **fails** under CI (``CI`` set),
so a CI run can never go green by skipping the tests that need a server.
"""

from __future__ import annotations

import getpass
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")
#: Debian's PostgreSQL 15 (package ``postgresql``); its binaries are not on PATH.
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


class ServerMissingError(RuntimeError):
    """A server binary the test needs is not installed."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, *, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen[bytes] | None, *, grace_s: float = 10.0) -> None:
    """Terminate a server, kill it if it does not go, and close its pipe."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()


def find_binary(candidates: tuple[str, ...], name: str) -> str:
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    if found:
        return found
    raise ServerMissingError(f"{name} is not installed (apt-get install {name})")


@dataclass(frozen=True, slots=True)
class Broker:
    """Where a test broker listens and the credentials it accepts."""

    host: str
    port: int
    username: str
    password: str = field(repr=False)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def url(self) -> str:
        return f"mqtt://{self.username}:{self.password}@{self.host}:{self.port}"


@contextmanager
def mosquitto(workdir: Path, *, username: str = "linli", password: str = "test-secret") -> Iterator[Broker]:
    """A Mosquitto 2 broker with password auth on, persistence off, unlimited queues."""
    binary = find_binary(MOSQUITTO_CANDIDATES, "mosquitto")
    passwd = find_binary(("/usr/bin/mosquitto_passwd",), "mosquitto_passwd")
    workdir.mkdir(parents=True, exist_ok=True)
    password_file = workdir / "passwd"
    subprocess.run(
        [passwd, "-b", "-c", str(password_file), username, password], check=True, capture_output=True
    )
    password_file.chmod(0o600)
    port = free_port()
    config = workdir / "mosquitto.conf"
    config.write_text(
        "\n".join(
            [
                f"listener {port} 127.0.0.1",
                # Started as root, Mosquitto would drop to user `mosquitto`, who cannot read
                # our temporary directory; stay the user we are.
                f"user {getpass.getuser()}",
                "allow_anonymous false",
                f"password_file {password_file}",
                "persistence false",
                # Defaults that bite (handbook §7): 1000 queued messages per client, 20 in flight.
                "max_queued_messages 0",
                "max_inflight_messages 0",
                "set_tcp_nodelay true",
                "log_type error",
                "log_type warning",
                "",
            ]
        )
    )
    proc = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc=proc)
        yield Broker("127.0.0.1", port, username, password, proc)
    finally:
        stop_process(proc)


#: The deployment kit's broker configuration (deploy/mosquitto): the cluster tests start it.
DEPLOY_MOSQUITTO = Path(__file__).parents[2] / "deploy" / "mosquitto"


@contextmanager
def deployed_mosquitto(
    workdir: Path, *, users: Mapping[str, str], acl: str | None = None, topic_prefix: str = "linli"
) -> Iterator[Broker]:
    """Mosquitto started from ``deploy/mosquitto/mosquitto.conf`` and its ``acl``, templated with
    a free loopback port and directories under ``workdir``; persistence on, as deployed.

    ``users`` (name → password) go into the password file; the first is the Broker's login.
    ``acl``: this text instead of the shipped ACL (a site's edited or broken one); either is a
    template too (``${TOPIC_PREFIX}``: the hubs' ``mqtt.topic_prefix``).
    """
    binary = find_binary(MOSQUITTO_CANDIDATES, "mosquitto")
    passwd = find_binary(("/usr/bin/mosquitto_passwd",), "mosquitto_passwd")
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    password_file = workdir / "passwd"
    for n, (user, password) in enumerate(users.items()):
        create = ["-c"] if n == 0 else []
        subprocess.run(
            [passwd, "-b", *create, str(password_file), user, password], check=True, capture_output=True
        )
    password_file.chmod(0o600)
    acl_text = (DEPLOY_MOSQUITTO / "acl").read_text(encoding="utf-8") if acl is None else acl
    (workdir / "acl").write_text(Template(acl_text).substitute(TOPIC_PREFIX=topic_prefix), encoding="utf-8")
    port = free_port()
    config = workdir / "mosquitto.conf"
    config.write_text(
        Template((DEPLOY_MOSQUITTO / "mosquitto.conf").read_text(encoding="utf-8")).substitute(
            PORT=port, BIND="127.0.0.1", CONF_DIR=workdir, DATA_DIR=data, RUN_AS=getpass.getuser()
        )
    )
    proc = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc=proc)
        user, password = next(iter(users.items()))
        yield Broker("127.0.0.1", port, user, password, proc)
    finally:
        stop_process(proc)


@dataclass(frozen=True, slots=True)
class Postgres:
    """A throw-away PostgreSQL cluster on loopback; ``url(db)`` names one of its databases."""

    host: str
    port: int
    user: str
    socket_dir: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"


def _as_cluster_owner(argv: list[str]) -> list[str]:
    """initdb and pg_ctl refuse to run as root (handbook §7): run them as ``postgres`` then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@contextmanager
def postgres(*, fsync: bool = True) -> Iterator[Postgres]:
    """Debian's PostgreSQL 15 in a temporary directory, on a random free port of 127.0.0.1.

    The cluster's superuser is ``postgres`` with ``trust`` authentication on loopback only.
    ``fsync=False`` is for the test suite (speed; a test never survives an OS crash anyway);
    measurements keep the default, durable settings.
    """
    initdb = POSTGRES_BIN / "initdb"
    pg_ctl = POSTGRES_BIN / "pg_ctl"
    if not (os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK)):
        raise ServerMissingError(f"PostgreSQL 15 is not installed ({initdb}; apt-get install postgresql)")
    # Not pytest's tmp_path: that is private to root, and the server runs as `postgres`.
    workdir = Path(tempfile.mkdtemp(prefix="linli-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(workdir, owner.pw_uid, owner.pw_gid)
    data = workdir / "data"
    port = free_port()
    started = False
    try:
        subprocess.run(
            _as_cluster_owner(
                [str(initdb), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale"]
            ),
            check=True,
            capture_output=True,
        )
        options = f"-k {workdir} -c listen_addresses=127.0.0.1 -p {port}"
        if not fsync:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        subprocess.run(
            _as_cluster_owner(
                [
                    str(pg_ctl),
                    "-D",
                    str(data),
                    "-l",
                    str(workdir / "log"),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "30",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        started = True
        wait_for_port(port)
        yield Postgres("127.0.0.1", port, "postgres", workdir)
    finally:
        if started:
            subprocess.run(
                _as_cluster_owner([str(pg_ctl), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                check=False,
                capture_output=True,
            )
        shutil.rmtree(workdir, ignore_errors=True)
