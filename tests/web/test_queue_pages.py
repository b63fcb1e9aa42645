"""The Queue page and the job page in a real browser, against `borgflow up` running real borg.

One system, one story: a backup's bar moves live and the job lands in "recently
completed" without a reload; a running backup is cancelled from its page (through the
confirmation dialog); its log is downloaded; a failed job shows its error. Along the
way the time from each progress event to the bar changing is measured in the browser
(a MutationObserver) and printed; screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio
from nats.aio.msg import Msg

from tests.support.upsystem import UpSystem
from tests.web.conftest import require_browser

require_browser()

from playwright.async_api import Browser, Dialog, Page, expect  # noqa: E402

pytestmark = pytest.mark.slow

# About 20 MB of random data: lz4 backs it up in a blink, `lzma,6` takes some seconds
# (the bar has time to move), whatever the disk.
FILES, FILE_SIZE = 5, 4 * 1024 * 1024
SLOW = "lzma,6"
UI_TIMEOUT_MS = 30_000
NUMBER = re.compile(r"^\d+(\.\d+)?$")

# Records every change of a progress bar's aria-valuenow with a wall-clock time (ms).
OBSERVER = """
window.__bars = [];
const record = (el, t) => window.__bars.push(
  {id: el.dataset.testid.slice(9), value: el.getAttribute('aria-valuenow'), t});
new MutationObserver((mutations) => {
  const t = performance.timeOrigin + performance.now();
  for (const m of mutations) {
    if (m.type === 'attributes' && m.target.dataset && (m.target.dataset.testid || '').startsWith('progress-')) {
      record(m.target, t);
    }
    for (const n of m.addedNodes || []) {
      if (n.querySelectorAll) for (const bar of n.querySelectorAll('[data-testid^="progress-"]')) record(bar, t);
    }
  }
}).observe(document, {subtree: true, childList: true, attributes: true, attributeFilter: ['aria-valuenow']});
"""


def write_source(root: Path) -> Path:
    """Fresh random content (so the files cache never skips it), same size every time."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(FILES):
        (root / f"part{i}.bin").write_bytes(os.urandom(FILE_SIZE))
    return root


@pytest.fixture
def system(tmp_path: Path) -> Iterator[UpSystem]:
    up = UpSystem(tmp_path / "data", tmp_path).start()
    try:
        yield up
    finally:
        up.stop()


class ProgressTap:
    """Every progress event on NATS: (job id, percent, its envelope's `at` in ms)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, float, float]] = []

    async def on_msg(self, msg: Msg) -> None:
        env = json.loads(msg.data)
        percent = env.get("data", {}).get("percent")
        if percent is not None:
            at = datetime.fromisoformat(env["at"].replace("Z", "+00:00")).timestamp() * 1000
            self.events.append((env["job_id"], float(percent), at))


@pytest_asyncio.fixture(loop_scope="session")
async def tap(system: UpSystem) -> AsyncIterator[ProgressTap]:
    env = dict(line.split("=", 1) for line in (system.data_dir / "borgflow.env").read_text().splitlines())
    nc = await nats.connect(env["BORGFLOW_NATS_URL"])
    tap = ProgressTap()
    await nc.subscribe("borgflow.progress.>", cb=tap.on_msg)
    try:
        yield tap
    finally:
        await nc.close()


def latencies_ms(tap: ProgressTap, job_id: str, changes: list[dict[str, Any]]) -> list[float]:
    """For each change of the job's bar: its time minus the `at` of the first event with that percent."""
    events = [(p, at) for j, p, at in tap.events if j == job_id]
    out: list[float] = []
    for change in changes:
        if change["id"] != job_id or change["value"] is None:
            continue
        at = next((a for p, a in events if p == float(change["value"])), None)
        if at is not None:
            out.append(change["t"] - at)
    return out


async def bar_values_seen(page: Page, job_id: str, n: int, timeout: float = 30.0) -> None:
    """Wait until the job's bar showed `n` different values (polled through the devtools
    protocol: the pages' CSP rightly forbids the eval that wait_for_function needs)."""
    deadline = asyncio.get_running_loop().time() + timeout
    seen: set[str] = set()
    while len(seen) < n:
        bars = await page.evaluate("window.__bars")
        seen = {b["value"] for b in bars if b["id"] == job_id and b["value"] is not None}
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the bar of {job_id} showed only {sorted(seen)}")
        await asyncio.sleep(0.05)


async def wait_job(system: UpSystem, job_id: str) -> dict[str, Any]:
    return await asyncio.to_thread(system.wait_job, job_id)


async def test_queue_and_job_pages_live(
    system: UpSystem, tap: ProgressTap, browser: Browser, screenshots: Path, tmp_path: Path
) -> None:
    src = write_source(tmp_path / "src")
    repo = system.ok("POST", "/api/repositories", {"name": "web", "location": str(tmp_path / "repo"), "agent": "local"})
    body = {"type": "init", "repository_id": repo["id"], "options": {"encryption": "none"}}
    init = system.ok("POST", "/api/jobs", body)
    assert (await wait_job(system, init["id"]))["status"] == "completed"
    plan = system.ok("POST", "/api/plans", {"name": "photos", "repository_id": repo["id"], "paths": [str(src)]})
    # A first, fast backup: the next one's percent is measured against its size.
    first = system.ok("POST", "/api/jobs", {"type": "backup", "plan_id": plan["id"]})
    assert (await wait_job(system, first["id"]))["status"] == "completed"
    system.ok("PUT", f"/api/plans/{plan['id']}", {"compression": SLOW})

    context = await browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    await context.add_init_script(OBSERVER)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    # The token comes in the address, is kept for the tab and leaves the address bar.
    await page.goto(f"{system.base}/queue#token={system.token}")
    await expect(page.get_by_test_id("stat-completed-24h")).to_contain_text("2")
    assert "token" not in page.url
    assert await page.evaluate("sessionStorage.getItem('borgflow.token')") == system.token
    await expect(page.locator("#live")).to_have_text("live")
    await page.evaluate("window.__sameDocument = true")  # gone if the page ever reloads

    # A backup: its bar moves, then it lands in "recently completed", all without a reload.
    write_source(src)
    job = system.ok("POST", "/api/jobs", {"type": "backup", "plan_id": plan["id"]})
    jid = job["id"]
    in_progress = page.get_by_test_id("in-progress").get_by_test_id(f"job-{jid}")
    await expect(in_progress).to_be_visible(timeout=UI_TIMEOUT_MS)
    bar = page.get_by_test_id(f"progress-{jid}")
    await expect(bar).to_have_attribute("aria-valuenow", NUMBER, timeout=UI_TIMEOUT_MS)
    await expect(bar).to_contain_text("files")
    await expect(bar).to_contain_text("≈")  # estimated from the first backup, and it says so
    await bar_values_seen(page, jid, 3)  # it moved, twice
    await page.screenshot(path=screenshots / "queue-backup-running.png", full_page=True)
    recent_row = page.get_by_test_id("recent").get_by_test_id(f"job-{jid}")
    await expect(recent_row).to_be_visible(timeout=60_000)
    await expect(recent_row.locator(".badge")).to_have_text("completed")
    await expect(in_progress).to_have_count(0)
    assert await page.evaluate("window.__sameDocument") is True
    await expect(page.get_by_test_id("stat-completed-24h")).to_contain_text("3")
    await page.screenshot(path=screenshots / "queue-backup-completed.png", full_page=True)

    changes = await page.evaluate("window.__bars")
    values = [c["value"] for c in changes if c["id"] == jid and c["value"] is not None]
    lat = latencies_ms(tap, jid, changes)
    assert len(set(values)) >= 2 and lat, (values, tap.events)
    print(
        f"\nprogress event -> bar change ({len(lat)} changes, values {values}): "
        f"p50 {statistics.median(lat):.1f} ms, max {max(lat):.1f} ms"
    )

    # A running backup, cancelled from its page through the confirmation dialog.
    write_source(src)
    running = system.ok("POST", "/api/jobs", {"type": "backup", "plan_id": plan["id"]})
    await page.goto(f"{system.base}/queue/{running['id']}")
    status = page.get_by_test_id("job-status")
    await expect(status).to_have_text("running", timeout=UI_TIMEOUT_MS)
    # Cancelled once borg is at work: its bar on this page shows a percent.
    await expect(page.get_by_test_id("job-progress")).to_have_attribute("aria-valuenow", NUMBER, timeout=UI_TIMEOUT_MS)
    await expect(page.get_by_test_id("job-log").locator("li").first).to_be_visible(timeout=UI_TIMEOUT_MS)
    await expect(page.locator("#options")).to_contain_text(SLOW)  # the plan's settings it runs with
    await expect(page.get_by_test_id("action-retry")).to_be_hidden()
    asked: list[str] = []

    async def confirm(dialog: Dialog) -> None:
        asked.append(f"{dialog.type}: {dialog.message}")
        await dialog.accept()

    page.once("dialog", confirm)
    await page.get_by_test_id("action-cancel").click()
    await expect(status).to_have_text("cancelled", timeout=UI_TIMEOUT_MS)
    assert asked and asked[0].startswith("confirm:"), asked
    await expect(page.get_by_test_id("action-cancel")).to_be_hidden()
    await expect(page.get_by_test_id("action-retry")).to_be_visible()
    await expect(page.get_by_test_id("job-log")).to_contain_text("borg")
    await page.screenshot(path=screenshots / "job-cancelled.png", full_page=True)

    # Its log, downloaded with the token, is the api's log.
    async with page.expect_download() as info:
        await page.get_by_test_id("action-download-log").click()
    download = await info.value
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    assert download.suggested_filename == f"job-{running['id']}.log"
    assert saved.read_text() == system.http.get(f"/api/jobs/{running['id']}/log").text != ""

    await check_failed_job_page(system, page, repo["id"], screenshots)
    await check_filters_and_pause(system, page, failed_plan="gone")
    await check_token_prompt(system, browser)
    assert not errors, errors


async def check_failed_job_page(system: UpSystem, page: Page, repo_id: str, screenshots: Path) -> None:
    plan = system.ok("POST", "/api/plans", {"name": "gone", "repository_id": repo_id, "paths": ["/no/such/dir"]})
    failed = system.ok("POST", "/api/jobs", {"type": "backup", "plan_id": plan["id"]})
    assert (await wait_job(system, failed["id"]))["status"] == "failed"
    await page.goto(f"{system.base}/queue/{failed['id']}")
    await expect(page.get_by_test_id("job-status")).to_have_text("failed")
    # The type's glyph and what the type does (common.js typeIcon), its name unchanged.
    job_type = page.locator("#job-type")
    await expect(job_type).to_have_text("backup")
    await expect(job_type).to_have_attribute("data-icon", "⬆")
    await expect(job_type).to_have_attribute("title", re.compile("backs up"))
    error = page.get_by_test_id("job-error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("source_not_found")
    await expect(page.get_by_test_id("action-retry")).to_be_visible()
    await expect(page.get_by_test_id("action-cancel")).to_be_hidden()
    await page.screenshot(path=screenshots / "job-failed.png", full_page=True)
    await page.goto(f"{system.base}/queue")
    row = page.get_by_test_id("recent").get_by_test_id(f"job-{failed['id']}")
    await expect(row.locator(".badge")).to_have_attribute("title", re.compile("source_not_found"))
    await expect(row.locator(".type")).to_have_attribute("data-icon", "⬆")
    await page.screenshot(path=screenshots / "queue.png", full_page=True)


async def check_filters_and_pause(system: UpSystem, page: Page, failed_plan: str) -> None:
    """A card filters the lists, the search narrows them, and a paused page stands still."""
    recent = page.get_by_test_id("recent")
    await page.get_by_test_id("stat-failed-24h").click()
    await expect(recent.locator(".row")).to_have_count(1)
    await expect(recent.locator(".row .subject")).to_have_text(failed_plan)
    assert "status=failed" in page.url
    await page.get_by_test_id("stat-failed-24h").click()  # again: every job
    await expect(recent.locator(".row")).to_have_count(5)
    await page.fill("input[name=q]", "PHOTOS")  # case-insensitive, by the api's `q`
    await expect(recent.locator(".row")).to_have_count(3)
    await page.click("#clear-filters")
    await expect(recent.locator(".row")).to_have_count(5)

    await page.click("#pause")
    await expect(page.locator("#live")).to_have_text("paused")
    ping = system.ok("POST", "/api/jobs", {"type": "ping", "agent": "local"})
    assert (await wait_job(system, ping["id"]))["status"] == "completed"
    await expect(recent.locator(".row")).to_have_count(5)  # it happened, the page stood still
    await page.click("#pause")
    await expect(recent.get_by_test_id(f"job-{ping['id']}")).to_be_visible()


async def check_token_prompt(system: UpSystem, browser: Browser) -> None:
    """Without a token the page asks for one, and works once given it."""
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{system.base}/queue")
    await expect(page.locator("#token-prompt")).to_be_visible()
    await expect(page.get_by_test_id("recent")).to_be_hidden()
    await page.fill("#token-input", system.token)
    await page.click("#token-form button[type=submit]")
    await expect(page.get_by_test_id("recent")).to_be_visible()
    await expect(page.get_by_test_id("stat-failed-24h")).to_contain_text("1")
    await context.close()
