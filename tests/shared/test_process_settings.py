"""What a process reads from its environment: clusters of NATS servers, replicas, and a clear
error naming the variable when a value cannot be used."""

from __future__ import annotations

import subprocess

import pytest

from shared.config import nats_servers, settings_from_env
from shared.exceptions import ConfigError
from tests.support.cluster import exe


def test_a_comma_separated_nats_url_is_a_cluster() -> None:
    s = settings_from_env({"BORGFLOW_NATS_URL": "nats://n1:4222, nats://n2:4222,n3:4222"})
    assert s.nats_servers == ["nats://n1:4222", "nats://n2:4222", "nats://n3:4222"]
    assert nats_servers("") == ["nats://127.0.0.1:4222"]


def test_stream_replicas_and_metrics_come_from_the_environment() -> None:
    s = settings_from_env({"BORGFLOW_STREAM_REPLICAS": "3", "BORGFLOW_METRICS_LISTEN": "0.0.0.0:9100"})
    assert s.stream_replicas == 3 and s.metrics_listen == "0.0.0.0:9100"
    assert settings_from_env({}).stream_replicas == 1


def test_request_limits_come_from_the_environment() -> None:
    env = {"BORGFLOW_MAX_BODY_BYTES": "65536", "BORGFLOW_MAX_SOCKETS_PER_TOKEN": "3"}
    s = settings_from_env(env | {"BORGFLOW_AUTH_FAILURES_PER_MINUTE": "0"})
    assert (s.max_body_bytes, s.max_sockets_per_token, s.auth_failures_per_minute) == (65536, 3, 0)
    d = settings_from_env({})
    assert (d.max_body_bytes, d.max_sockets_per_token, d.auth_failures_per_minute) == (4 << 20, 20, 10)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"BORGFLOW_STREAM_REPLICAS": "three"}, "BORGFLOW_STREAM_REPLICAS"),
        ({"BORGFLOW_STREAM_REPLICAS": "7"}, "BORGFLOW_STREAM_REPLICAS"),
        ({"BORGFLOW_HEARTBEAT_S": "often"}, "BORGFLOW_HEARTBEAT_S"),
        ({"BORGFLOW_MAX_BODY_BYTES": "0"}, "BORGFLOW_MAX_BODY_BYTES"),
        ({"BORGFLOW_MAX_SOCKETS_PER_TOKEN": "0"}, "BORGFLOW_MAX_SOCKETS_PER_TOKEN"),
        ({"BORGFLOW_AUTH_FAILURES_PER_MINUTE": "-1"}, "BORGFLOW_AUTH_FAILURES_PER_MINUTE"),
        # Stored once by its hash, the join role would replace the admin one: no admin token left.
        ({"BORGFLOW_ADMIN_TOKEN": "one-token", "BORGFLOW_JOIN_TOKEN": "one-token"}, "BORGFLOW_JOIN_TOKEN"),
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        settings_from_env(env)


def test_a_service_with_a_bad_setting_says_so_and_exits_2() -> None:
    done = subprocess.run(
        [exe(), "dispatcher"],
        env={"BORGFLOW_STREAM_REPLICAS": "lots", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "BORGFLOW_STREAM_REPLICAS" in done.stderr, done.stderr


def test_version() -> None:
    done = subprocess.run([exe(), "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.startswith("borgflow ") and done.stdout.split()[1][0].isdigit()
