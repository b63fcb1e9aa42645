"""`python -m services.projector [--rebuild]`: project the streams into Postgres."""

import asyncio
import sys

from services.projector.app import run
from shared.config import Settings
from shared.runtime import run_service


async def _service(settings: Settings, stop: asyncio.Event) -> None:
    await run(settings, stop, rebuild_first="--rebuild" in sys.argv[1:])


if __name__ == "__main__":
    run_service(_service)
