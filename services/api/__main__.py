"""`python -m services.api`: run the api from BORGFLOW_* environment variables until SIGINT/SIGTERM."""

from __future__ import annotations

from services.api.app import run
from shared.runtime import run_service

if __name__ == "__main__":
    run_service(run)
