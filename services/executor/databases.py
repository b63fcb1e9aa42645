"""Pure construction of the database tools' command lines, and reading their errors.

Always argument lists, never shell strings. A password never goes into an argument: it is
in the child's environment only (PGPASSWORD, MYSQL_PWD), and only in that child's. The
tools are PostgreSQL's (`pg_dump`, `pg_restore`, `createdb`) and MariaDB's (`mariadb-dump`,
`mariadb`, which also speak to MySQL servers); BORGFLOW_PG_BIN_DIR and BORGFLOW_MYSQL_BIN_DIR
in the executor's environment say where they are when not on PATH.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

import msgspec

from shared.events import DatabaseRef

DUMPS_DIR = "borgflow-dumps"
# Seconds a tool waits for the server to answer before it gives up (unreachable hosts fail, not hang).
CONNECT_TIMEOUT_S = 15
_INHERITED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR")


class Server(msgspec.Struct, frozen=True, kw_only=True):
    """Where a tool connects: a plan's database or a restore's target."""

    kind: str
    host: str
    port: int
    user: str
    database: str

    @classmethod
    def of(cls, db: DatabaseRef) -> Server:
        return cls(kind=db.kind, host=db.host, port=db.port, user=db.user, database=db.database)

    def describe(self) -> str:
        return f"{self.kind} database {self.database} on {self.host}:{self.port} (user {self.user})"


class Tool(msgspec.Struct, frozen=True, kw_only=True):
    """One database tool to run: its arguments and the environment it gets."""

    argv: list[str]
    env: dict[str, str]

    @property
    def summary(self) -> str:
        """The command as a person would type it (no secret: the password is only in `env`)."""
        return " ".join(self.argv)


def dump_path(kind: str, database: str) -> str:
    """Where a database's dump is in an archive (relative, as borg stores paths)."""
    return f"{DUMPS_DIR}/{kind}/{database}.dump"


def _bin(environ: Mapping[str, str], kind: str, name: str) -> str:
    where = environ.get("BORGFLOW_PG_BIN_DIR" if kind == "postgresql" else "BORGFLOW_MYSQL_BIN_DIR")
    return os.path.join(where, name) if where else name


def environment(inherited: Mapping[str, str], kind: str, password: str | None) -> dict[str, str]:
    """A tool's environment: a few basics of the executor's, and the password when there is one."""
    env = {k: inherited[k] for k in _INHERITED if k in inherited}
    if kind == "postgresql":
        env["PGCONNECT_TIMEOUT"] = str(CONNECT_TIMEOUT_S)
        if password is not None:
            env["PGPASSWORD"] = password
    elif password is not None:
        env["MYSQL_PWD"] = password
    return env


def _pg_conn(server: Server) -> list[str]:
    # --no-password: a tool that would prompt fails at once instead (no terminal to answer it).
    return [f"--host={server.host}", f"--port={server.port}", f"--username={server.user}", "--no-password"]


def _my_conn(server: Server, *, client: bool = False) -> list[str]:
    # --protocol=TCP: `localhost` would otherwise mean the server's socket, not the port given.
    # Only the `mariadb` client takes a connect timeout; mariadb-dump has none.
    timeout = [f"--connect-timeout={CONNECT_TIMEOUT_S}"] if client else []
    return [f"--host={server.host}", f"--port={server.port}", f"--user={server.user}", "--protocol=TCP", *timeout]


def dump(server: Server, password: str | None, environ: Mapping[str, str], to: str | None = None) -> Tool:
    """The dump of one database to stdout (or to the file `to`: a test dumps to /dev/null):
    `pg_dump -Fc` or `mariadb-dump --single-transaction`."""
    env = environment(environ, server.kind, password)
    if server.kind == "postgresql":
        argv = [_bin(environ, server.kind, "pg_dump"), "--format=custom", *_pg_conn(server)]
        argv += [f"--file={to}", "--no-sync"] if to else []  # /dev/null cannot be fsynced
        return Tool(argv=[*argv, f"--dbname={server.database}"], env=env)
    argv = [_bin(environ, server.kind, "mariadb-dump"), *_my_conn(server), "--single-transaction"]
    argv += [f"--result-file={to}"] if to else []
    argv += ["--routines", "--triggers", "--hex-blob", "--", server.database]
    return Tool(argv=argv, env=env)


def create_database(server: Server, password: str | None, environ: Mapping[str, str]) -> Tool:
    """Create the target database when it is missing (PostgreSQL: `createdb`, which fails on an existing one)."""
    env = environment(environ, server.kind, password)
    if server.kind == "postgresql":
        return Tool(argv=[_bin(environ, server.kind, "createdb"), *_pg_conn(server), "--", server.database], env=env)
    statement = f"CREATE DATABASE IF NOT EXISTS {quote_mysql_name(server.database)}"
    argv = [_bin(environ, server.kind, "mariadb"), *_my_conn(server, client=True), "--batch", "-e", statement]
    return Tool(argv=argv, env=env)


def restore(server: Server, password: str | None, environ: Mapping[str, str]) -> Tool:
    """The restore of a dump read on stdin into the target database."""
    env = environment(environ, server.kind, password)
    if server.kind == "postgresql":
        argv = [_bin(environ, server.kind, "pg_restore"), "--no-owner", "--exit-on-error", *_pg_conn(server)]
        return Tool(argv=[*argv, f"--dbname={server.database}"], env=env)
    return Tool(
        argv=[_bin(environ, server.kind, "mariadb"), *_my_conn(server), f"--database={server.database}"], env=env
    )


def quote_mysql_name(name: str) -> str:
    """A MySQL identifier, quoted: a backtick inside is doubled, so the name can never end the quote."""
    return "`" + name.replace("`", "``") + "`"


def already_exists(stderr: str) -> bool:
    """`createdb` refused because the database is there: for a restore that is fine."""
    return "already exists" in stderr


# How the tools say what went wrong (PostgreSQL's libpq and MariaDB's client library; their
# wording is stable across versions, unlike SQLSTATEs they do not print). Checked in order.
_CONNECTION = re.compile(
    r"could not connect|connection to server|Connection refused|could not translate host name|timeout expired"
    r"|password authentication failed|no password supplied|no pg_hba\.conf entry|role \".*\" does not exist"
    r"|Can't connect|Unknown (?:MySQL|MariaDB) server host|Access denied for user '[^']*'@'[^']*' \(using password"
    r"|Lost connection|server has gone away|Unknown database|database \".*\" does not exist",
    re.IGNORECASE,
)
_PRIVILEGES = re.compile(
    r"permission denied|must be owner|must be superuser|Access denied|command denied|privilege", re.IGNORECASE
)
_VERSION = re.compile(r"unsupported version|server version mismatch|aborting because of server version", re.IGNORECASE)


def failure_kind(stderr: str, *, restoring: bool) -> str:
    """The error kind of a database tool that failed, from what it printed."""
    if _CONNECTION.search(stderr):
        return "database_connection"
    if _VERSION.search(stderr):
        return "database_version"
    if _PRIVILEGES.search(stderr):
        return "database_privileges"
    return "restore_failed" if restoring else "dump_failed"


def last_lines(lines: Sequence[str], n: int = 5) -> str:
    """What a tool said last (its error), one line, for an error message."""
    said = [line.strip() for line in lines if line.strip()]
    return " / ".join(said[-n:])
