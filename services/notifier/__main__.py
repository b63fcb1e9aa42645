"""`python -m services.notifier`."""

from services.notifier.app import run
from shared.runtime import run_service

if __name__ == "__main__":
    run_service(run)
