"""The machine's PostgreSQL (127.0.0.1:5432, postgres, trust) and MariaDB (127.0.0.1:3306, root, no
password), for tests that dump and restore: each test makes databases of its own (unique names)
and drops them. MariaDB is skipped, saying why, only where none answers."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from shared import ids

PG = {"kind": "postgresql", "host": "127.0.0.1", "port": 5432, "user": "postgres"}
MY = {"kind": "mysql", "host": "127.0.0.1", "port": 3306, "user": "root"}


def unique(prefix: str) -> str:
    return f"bf_{prefix}_{ids.new_id()[-10:].lower()}"


def psql(sql: str, database: str = "postgres") -> str:
    done = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database],
        input=sql,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def mariadb(sql: str, database: str | None = None) -> str:
    argv = ["mariadb", "-h", "127.0.0.1", "-P", "3306", "-u", "root", "--batch", "--skip-column-names"]
    done = subprocess.run(
        [*argv, *([database] if database else [])], input=sql, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def postgres_answers() -> bool:
    if shutil.which("psql") is None or shutil.which("pg_dump") is None:
        return False
    done = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", "SELECT 1"], capture_output=True, timeout=10, check=False
    )
    return done.returncode == 0


def mariadb_answers() -> bool:
    if shutil.which("mariadb") is None or shutil.which("mariadb-dump") is None:
        return False
    done = subprocess.run(
        ["mariadb", "-h", "127.0.0.1", "-P", "3306", "-u", "root", "-e", "SELECT 1"],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return done.returncode == 0


ROWS_SQL = "SELECT id, name, amount, note FROM items ORDER BY id"


@contextmanager
def postgres_database(rows: int = 200) -> Iterator[str]:
    """A PostgreSQL database with a table `items` of `rows` rows; dropped after."""
    if not postgres_answers():
        pytest.skip("no PostgreSQL answers on 127.0.0.1:5432 (user postgres): database dump tests need one")
    name = unique("pg")
    psql(f'CREATE DATABASE "{name}"')
    try:
        psql(
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, amount numeric(12,2), note text);"
            "INSERT INTO items SELECT i, 'item ' || i, i * 1.25, repeat('n', i % 50)"
            f" FROM generate_series(1, {rows}) i;",
            name,
        )
        yield name
    finally:
        drop_postgres(name)


def drop_postgres(name: str) -> None:
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def mariadb_database(rows: int = 200) -> Iterator[str]:
    """A MariaDB database with a table `items` of `rows` rows; dropped after."""
    if not mariadb_answers():
        pytest.skip("no MariaDB/MySQL answers on 127.0.0.1:3306 (user root): MySQL dump tests need one")
    name = unique("my")
    mariadb(f"CREATE DATABASE `{name}`")
    try:
        values = ",".join(f"({i}, 'item {i}', {i * 1.25:.2f}, '{'n' * (i % 50)}')" for i in range(1, rows + 1))
        mariadb(
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, amount decimal(12,2), note text);"
            f"INSERT INTO items VALUES {values};",
            name,
        )
        yield name
    finally:
        drop_mariadb(name)


def drop_mariadb(name: str) -> None:
    mariadb(f"DROP DATABASE IF EXISTS `{name}`")


def postgres_rows(name: str) -> str:
    return psql(ROWS_SQL, name)


def mariadb_rows(name: str) -> str:
    return mariadb(ROWS_SQL, name)
