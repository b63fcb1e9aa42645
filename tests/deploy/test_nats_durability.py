"""Every NATS borgflow configures acknowledges an append only once it is on disk
(`jetstream { sync_interval: always }`): `borgflow up`'s server and compose's, each run as a real
nats-server and asked through its monitoring endpoint; the Kubernetes chart values, as written."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from services import up
from shared.testing import NatsServer, free_port, wait_until
from tests.deploy.test_manifests import NATS_VALUES, TOKENS, flags, nats_services, run_compose


def jetstream_config(server: NatsServer) -> dict[str, Any]:
    """The running server's JetStream settings, from /varz on a monitoring port of the test's."""
    monitor = free_port()
    server.extra_args += ["-m", str(monitor)]
    server.start()
    try:
        varz = wait_until(lambda: _get(f"http://127.0.0.1:{monitor}/varz"), 10, "nats-server's /varz")
        config: dict[str, Any] = varz["jetstream"]["config"]
        return config
    finally:
        server.stop()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=1) as r:
        return json.load(r)


def test_borgflow_ups_nats_server_syncs_every_append_before_acknowledging_it(tmp_path: Path) -> None:
    config = jetstream_config(up.nats_server(tmp_path))
    assert config["sync_always"] is True
    assert config["store_dir"].startswith(str(tmp_path / "nats"))  # its store is where it always was


def test_composes_nats_servers_sync_every_append_before_acknowledging_it(tmp_path: Path) -> None:
    done = run_compose("config", "--format", "json", tokens=TOKENS, workdir=tmp_path)
    assert done.returncode == 0, done.stderr
    model = json.loads(done.stdout)
    contents = set()
    for name, service in nats_services(model["services"]).items():
        given = flags(service["command"])
        path = given.get("--config") or given.get("-c")
        assert path, f"{name}: started without a configuration file"
        mounted = [c["source"] for c in service.get("configs", []) if c["target"] == path]
        assert len(mounted) == 1, f"{name}: no configuration mounted at {path}"
        contents.add(model["configs"][mounted[0]]["content"])
    [content] = contents  # one configuration for the three
    conf = tmp_path / "nats.conf"
    conf.write_text(content)
    server = NatsServer(tmp_path / "store", extra_args=["--config", str(conf)])
    assert jetstream_config(server)["sync_always"] is True


def test_the_kubernetes_nats_values_ask_the_chart_to_sync_every_append() -> None:
    values = yaml.safe_load(NATS_VALUES.read_text())
    assert values["config"]["jetstream"]["merge"]["sync_interval"] == "always"
