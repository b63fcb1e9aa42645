"""The database tools' command lines and how their failures read: pure, no server needed."""

from __future__ import annotations

from services.executor import databases
from services.executor.databases import Server

PG = Server(kind="postgresql", host="db.example", port=5433, user="backup", database="app")
MY = Server(kind="mysql", host="db.example", port=3307, user="backup", database="shop`; DROP")


def test_passwords_go_to_the_childs_environment_never_to_its_arguments() -> None:
    for server, var in ((PG, "PGPASSWORD"), (MY, "MYSQL_PWD")):
        for build in (databases.dump, databases.restore, databases.create_database):
            tool = build(server, "s3cret", {"PATH": "/usr/bin", "BORGFLOW_TOKEN": "t0ken"})
            assert tool.env[var] == "s3cret" and "BORGFLOW_TOKEN" not in tool.env
            assert not any("s3cret" in arg for arg in tool.argv) and "s3cret" not in tool.summary
    assert "PGPASSWORD" not in databases.dump(PG, None, {}).env


def test_dumps_are_custom_format_and_single_transaction() -> None:
    assert databases.dump(PG, None, {}).argv == [
        "pg_dump",
        "--format=custom",
        "--host=db.example",
        "--port=5433",
        "--username=backup",
        "--no-password",
        "--dbname=app",
    ]
    my = databases.dump(MY, None, {"BORGFLOW_MYSQL_BIN_DIR": "/opt/mariadb/bin"}).argv
    assert my[0] == "/opt/mariadb/bin/mariadb-dump" and "--single-transaction" in my
    assert my[-2:] == ["--", "shop`; DROP"]  # a name is an argument, never an option
    assert databases.dump_path("mysql", "shop") == "borgflow-dumps/mysql/shop.dump"


def test_a_mysql_database_name_is_quoted_so_it_cannot_end_its_quote() -> None:
    create = databases.create_database(MY, None, {}).argv
    assert create[-1] == "CREATE DATABASE IF NOT EXISTS `shop``; DROP`"
    assert databases.create_database(PG, None, {}).argv[-2:] == ["--", "app"]


def test_failures_read_as_connection_privileges_or_version() -> None:
    kind = databases.failure_kind
    assert (
        kind(
            'pg_restore: error: connection to server at "h" (1.2.3.4), port 5432 failed: Connection refused',
            restoring=True,
        )
        == "database_connection"
    )
    assert (
        kind("ERROR 1045 (28000): Access denied for user 'u'@'h' (using password: YES)", restoring=True)
        == "database_connection"
    )
    assert (
        kind("pg_restore: error: could not execute query: ERROR:  permission denied for schema public", restoring=True)
        == "database_privileges"
    )
    assert kind("pg_restore: error: unsupported version (1.16) in file header", restoring=True) == "database_version"
    assert kind("pg_restore: error: input file is too short", restoring=True) == "restore_failed"
    assert kind("mysqldump: Got error: 1044", restoring=False) == "dump_failed"
