"""The Queue page's typed search, selection and bulk cancel, and a retried job's timeline and
attempts, in a real browser against `borgflow up` running real borg.

Jobs for an agent that never comes (`ghost`) stay queued: they are what gets searched for,
selected and cancelled. A backup into a repository never initialised fails at once in borg, and
its retry fails the same way: two attempts, each with borg's exit code.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.support.upsystem import UpSystem, data_dir
from tests.web.conftest import require_browser

require_browser()

from playwright.async_api import Browser, Dialog, Page, expect  # noqa: E402

pytestmark = pytest.mark.slow

UI_TIMEOUT_MS = 30_000


@pytest.fixture
def system(tmp_path: Path) -> Iterator[UpSystem]:
    up = UpSystem(data_dir(), tmp_path).start()
    try:
        yield up
    finally:
        up.stop()


async def wait_job(system: UpSystem, job_id: str) -> dict[str, Any]:
    return await asyncio.to_thread(system.wait_job, job_id)


async def test_search_select_bulk_cancel_and_a_retried_jobs_history(
    system: UpSystem, browser: Browser, screenshots: Path, tmp_path: Path
) -> None:
    repo = system.ok(
        "POST", "/api/repositories", {"name": "home", "location": str(tmp_path / "repo"), "agent": "local"}
    )
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    # No `init`: borg itself fails, with its exit code. queue_behavior `queue`: the retry waits
    # for its plan's view of the first attempt to end, never a 409.
    body = {"name": "uninit", "repository_id": repo["id"], "paths": [str(src)], "queue_behavior": "queue"}
    plan = system.ok("POST", "/api/plans", body)
    first = system.ok("POST", "/api/jobs", {"type": "backup", "plan_id": plan["id"]})
    assert (await wait_job(system, first["id"]))["status"] == "failed"
    second = system.ok("POST", f"/api/jobs/{first['id']}/retry")
    done = await wait_job(system, second["id"])
    assert done["status"] == "failed" and done["attempt"] == 2 and done["error"]["exit_code"], done
    ghosts = [system.ok("POST", "/api/jobs", {"type": "ping", "agent": "ghost"})["id"] for _ in range(3)]

    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(f"{system.base}/queue#token={system.token}")
    await expect(page.locator("#live")).to_have_text("live")
    await expect(page.get_by_test_id("count-failed")).to_contain_text("2")

    # A typed search narrows the lists and lands in the address, so a reload keeps it.
    search = page.get_by_test_id("search")
    await search.fill("type:ping agent:ghost status:queued")
    queued = page.get_by_test_id("queued")
    await expect(queued.locator(".row")).to_have_count(3)
    await expect(page.get_by_test_id("recent").locator(".row")).to_have_count(0)
    await expect(page).to_have_url(re.compile(r"[?&]q=type%3Aping"))
    assert parse_qs(urlparse(page.url).query)["q"] == ["type:ping agent:ghost status:queued"]
    await page.reload()
    await expect(page.get_by_test_id("search")).to_have_value("type:ping agent:ghost status:queued")
    await expect(queued.locator(".row")).to_have_count(3)
    await page.evaluate("window.__sameDocument = true")  # gone if the page ever reloads again

    # A term the api refuses is said next to the box.
    await search.fill("colour:red")
    await expect(page.get_by_test_id("search-problem")).to_contain_text("colour")
    await search.fill("type:ping agent:ghost")
    await expect(page.get_by_test_id("search-problem")).to_be_hidden()
    await expect(queued.locator(".row")).to_have_count(3)

    # Two selected, cancelled in one go through the confirmation; the third stays queued.
    await page.get_by_test_id(f"select-{ghosts[0]}").check()
    await page.get_by_test_id(f"select-{ghosts[1]}").check()
    await expect(page.get_by_test_id("bulk")).to_contain_text("2 selected")
    await page.screenshot(path=screenshots / "queue-search.png", full_page=True)
    asked: list[str] = []

    async def confirm(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    page.once("dialog", confirm)
    await page.get_by_test_id("bulk-cancel").click()
    recent = page.get_by_test_id("recent")
    for jid in ghosts[:2]:
        await expect(recent.get_by_test_id(f"job-{jid}").locator(".badge")).to_have_text(
            "cancelled", timeout=UI_TIMEOUT_MS
        )
    assert asked and "2 selected" in asked[0], asked
    await expect(queued.get_by_test_id(f"job-{ghosts[2]}")).to_be_visible()
    await expect(page.get_by_test_id("bulk")).to_be_hidden()
    assert system.ok("GET", f"/api/jobs/{ghosts[2]}")["status"] == "queued"

    assert await page.evaluate("window.__sameDocument") is True

    # A queued job's timeline says why it waits, as the dispatcher says it now.
    await page.goto(f"{system.base}/queue/{ghosts[2]}")
    waiting = page.get_by_test_id("job-timeline").locator('li[data-event="waiting"]')
    await expect(waiting).to_contain_text("agent ghost is offline")
    await expect(waiting).to_contain_text("by the dispatcher")

    # Everything the search matches (the address carries it): counted, confirmed, cancelled.
    await page.goto(f"{system.base}/queue?q=type%3Aping+agent%3Aghost+status%3Aqueued")
    await expect(queued.locator(".row")).to_have_count(1)
    await page.get_by_test_id(f"select-{ghosts[2]}").check()
    await page.get_by_test_id("bulk-all").click()
    await expect(page.get_by_test_id("bulk")).to_contain_text("all 1 jobs matching")
    page.once("dialog", confirm)
    await page.get_by_test_id("bulk-cancel").click()
    await expect(queued.locator(".row")).to_have_count(0, timeout=UI_TIMEOUT_MS)
    assert "all 1 jobs matching" in asked[-1], asked
    assert system.ok("GET", f"/api/jobs/{ghosts[2]}")["status"] == "cancelled"

    # The retried job's page: each transition with who caused it, and both attempts with exit codes.
    await page.goto(f"{system.base}/queue/{second['id']}")
    timeline = page.get_by_test_id("job-timeline")
    steps = timeline.locator("li")
    await expect(steps).to_have_count(4)
    await expect(steps.nth(0)).to_contain_text("by admin")
    await expect(steps.nth(1)).to_contain_text("dispatcher")
    await expect(steps.nth(2)).to_contain_text("executor local")
    await expect(steps.nth(3)).to_contain_text("failed")
    attempts = page.get_by_test_id("job-attempts")
    await expect(attempts.locator(".row")).to_have_count(2)
    for job in (first, second):
        row = attempts.get_by_test_id(f"attempt-{job['id']}")
        await expect(row).to_contain_text(f"exit {done['error']['exit_code']}")
        await expect(row).to_contain_text(done["error"]["kind"])
    await expect(page.get_by_test_id("job-config")).to_contain_text(str(src))
    await expect(page.get_by_test_id("job-config")).to_contain_text(str(tmp_path / "repo"))
    await page.screenshot(path=screenshots / "job-timeline.png", full_page=True)

    await check_many_queued(system, page, screenshots)
    assert not errors, errors
    await context.close()


async def check_many_queued(system: UpSystem, page: Page, screenshots: Path) -> None:
    """More queued jobs than a page lists: the summary says how many, a search pages through
    `next_cursor`, and "all matching" acts on every one of them, not only those listed."""
    n = 260
    answer = system.ok("POST", "/api/jobs/batch", {"jobs": [{"type": "ping", "agent": "ghost"}] * n})
    assert len(answer["items"]) == n
    await page.goto(f"{system.base}/queue")
    queued = page.get_by_test_id("queued")
    await expect(queued.locator("h2 .count")).to_have_text(f"(first 200 of {n})")
    await expect(page.get_by_test_id("count-queued")).to_contain_text(str(n))

    await page.goto(f"{system.base}/queue?q=agent%3Aghost+status%3Aqueued")
    await expect(queued.locator(".row")).to_have_count(200)
    await page.get_by_test_id("load-more").click()
    await expect(queued.locator(".row")).to_have_count(n)
    await expect(page.get_by_test_id("load-more")).to_be_hidden()
    await queued.locator("input.select").first.check()
    await page.get_by_test_id("bulk-all").click()
    await expect(page.get_by_test_id("bulk")).to_contain_text(f"all {n} jobs matching")
    await page.screenshot(path=screenshots / "queue-bulk-all-matching.png")
    page.once("dialog", lambda d: asyncio.ensure_future(d.accept()))
    await page.get_by_test_id("bulk-cancel").click()
    await expect(queued.locator(".row")).to_have_count(0, timeout=UI_TIMEOUT_MS)
    await expect(page.get_by_test_id("count-cancelled")).to_contain_text(str(n + 3), timeout=UI_TIMEOUT_MS)
