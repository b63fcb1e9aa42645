"""`python -m services.executor --agent NAME`: run one agent's executor until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import os

from services.executor.app import run
from shared.config import settings_from_env
from shared.runtime import run_service


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.executor", description=__doc__)
    parser.add_argument("--agent", help="agent name (default: $BORGFLOW_AGENT, else 'local')")
    parser.add_argument("--nats-url", help="NATS server (default: $BORGFLOW_NATS_URL)")
    parser.add_argument("--data-dir", help="where borg's cache and config live (default: $BORGFLOW_DATA_DIR)")
    args = parser.parse_args(argv)
    run_service(run, settings_from_env(os.environ, agent=args.agent, nats_url=args.nats_url, data_dir=args.data_dir))


if __name__ == "__main__":
    main()
