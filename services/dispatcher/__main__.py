"""`python -m services.dispatcher`."""

from services.dispatcher.app import run
from shared.runtime import run_service

if __name__ == "__main__":
    run_service(run)
