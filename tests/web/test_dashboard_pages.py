"""The Dashboard, Agents and Settings pages in a real browser, against one `borgflow up` running
real borg: repository cards, a running backup's bar, the calendar, the latest failures with
their hints and the timing charts; each agent's state and versions with ping and update actions;
settings and schedules edited through forms, the api's errors shown beside the field.
Screenshots go to artifacts/screenshots/ (dashboard.png, agents.png, settings.png).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared.version import VERSION
from tests.support.upsystem import UpSystem, data_dir
from tests.web.conftest import require_browser

require_browser()

from playwright.async_api import Browser, Dialog, Page, expect  # noqa: E402

pytestmark = pytest.mark.slow

UI_TIMEOUT_MS = 30_000
# A ratio from the repository's stats where the api has them, else a dash: never empty, never NaN.
RATIO_OR_DASH = re.compile(r"^(\d+\.\d\d×|—)$")


@pytest.fixture
def system(tmp_path: Path) -> Iterator[UpSystem]:
    up = UpSystem(data_dir(), tmp_path).start()  # outside pytest's tmp: Postgres runs as another user
    try:
        yield up
    finally:
        up.stop()


async def database(system: UpSystem, sql: str, *args: Any) -> None:
    env = dict(line.split("=", 1) for line in (system.data_dir / "borgflow.env").read_text().splitlines())
    conn = await asyncpg.connect(env["BORGFLOW_DATABASE_URL"])
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


async def backdate_schedule(system: UpSystem, schedule_id: str, days: int) -> None:
    """As if the schedule was made `days` ago (and never fired since: nobody ran the scheduler then)."""
    ago = "now() - make_interval(days => $2)"
    await database(
        system, f"UPDATE schedules SET created_at = {ago}, updated_at = {ago} WHERE id = $1", schedule_id, days
    )


async def wait_job(system: UpSystem, job_id: str) -> dict[str, Any]:
    return await asyncio.to_thread(system.wait_job, job_id)


async def submit(system: UpSystem, body: dict[str, Any]) -> dict[str, Any]:
    job: dict[str, Any] = system.ok("POST", "/api/jobs", body)
    return await wait_job(system, job["id"])


async def test_dashboard_agents_and_settings(
    system: UpSystem, browser: Browser, screenshots: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}.bin").write_bytes(os.urandom(512 * 1024))
    repo = system.ok(
        "POST", "/api/repositories", {"name": "home", "location": str(tmp_path / "repo"), "agent": "local"}
    )
    init = {"type": "init", "repository_id": repo["id"], "options": {"encryption": "none"}}
    assert (await submit(system, init))["status"] == "completed"
    plan = system.ok("POST", "/api/plans", {"name": "docs", "repository_id": repo["id"], "paths": [str(src)]})
    assert (await submit(system, {"type": "backup", "plan_id": plan["id"]}))["status"] == "completed"
    gone = system.ok("POST", "/api/plans", {"name": "gone", "repository_id": repo["id"], "paths": ["/no/such/dir"]})
    failed = await submit(system, {"type": "backup", "plan_id": gone["id"]})
    assert failed["status"] == "failed" and failed["error"]["hint"], failed
    schedule = {"name": "nightly check", "cron": "0 3 * * *", "job": {"type": "check", "repository_id": repo["id"]}}
    nightly = system.ok("POST", "/api/schedules", schedule)
    await backdate_schedule(system, nightly["id"], days=3)  # so that it has missed runs to show

    context = await browser.new_context(viewport={"width": 1280, "height": 1000})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    await check_dashboard(system, page, repo, plan, failed, screenshots)
    await check_agents(system, page, screenshots)
    await check_settings(system, page, repo, screenshots)
    assert not errors, errors
    await context.close()


async def check_dashboard(
    system: UpSystem, page: Page, repo: dict[str, Any], plan: dict[str, Any], failed: dict[str, Any], screenshots: Path
) -> None:
    await page.goto(f"{system.base}/dashboard#token={system.token}")
    await expect(page.locator("#live")).to_have_text("live", timeout=UI_TIMEOUT_MS)
    await page.evaluate("window.__sameDocument = true")  # gone if the page ever reloads
    card = page.get_by_test_id(f"repo-usage-{repo['id']}")
    await expect(card).to_contain_text("home")
    await expect(card.locator("[data-fact=dedup]")).to_have_text(RATIO_OR_DASH)

    failures = page.get_by_test_id("recent-failures")
    row = failures.get_by_test_id(f"failure-{failed['id']}")
    await expect(row).to_contain_text(failed["error"]["kind"])
    await expect(row.locator(".hint")).to_have_text(failed["error"]["hint"])

    calendar = page.get_by_test_id("calendar")
    await expect(calendar.locator("[data-kind=now]")).to_have_count(1)
    await expect(calendar.locator("[data-kind=fire]").first).to_be_attached()
    await expect(calendar.locator("[data-kind=missed]")).to_have_count(3)  # 03:00 on each of the last 3 days
    await expect(calendar).to_contain_text("nightly check")
    # Wait and run times of the day's jobs: a line or dot per job type.
    await expect(page.locator("#chart-run circle").first).to_be_attached()
    await expect(page.locator("#timings-legend")).to_contain_text("backup")

    # Live, without a reload: a slow backup shows its bar, leaves "running", and a new failure lands.
    system.ok("PUT", f"/api/plans/{plan['id']}", {"compression": "lzma,6"})
    for i in range(4):
        (Path(system.work) / "src" / f"g{i}.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    job = system.ok("POST", "/api/jobs", {"type": "backup", "plan_id": plan["id"]})
    running = page.get_by_test_id("running").get_by_test_id(f"job-{job['id']}")
    await expect(running).to_be_visible(timeout=UI_TIMEOUT_MS)
    await expect(page.get_by_test_id(f"progress-{job['id']}")).to_contain_text("files", timeout=UI_TIMEOUT_MS)
    await page.screenshot(path=screenshots / "dashboard.png", full_page=True)
    await expect(running).to_have_count(0, timeout=60_000)
    again = system.ok("POST", "/api/jobs", {"type": "backup", "plan_id": failed["plan_id"]})
    await expect(failures.get_by_test_id(f"failure-{again['id']}")).to_be_visible(timeout=UI_TIMEOUT_MS)
    assert await page.evaluate("window.__sameDocument") is True
    await page.get_by_role("link", name="Agents", exact=True).click()
    await page.wait_for_url("**/agents")


async def check_agents(system: UpSystem, page: Page, screenshots: Path) -> None:
    agent = next(a for a in system.ok("GET", "/api/agents")["items"] if a["name"] == "local")
    card = page.get_by_test_id("agent-local")
    await expect(card.locator(".state")).to_have_text("online", timeout=UI_TIMEOUT_MS)
    await expect(card.locator("[data-fact=borg]")).to_have_text(agent["borg_version"])
    await expect(card.locator("[data-fact=borgflow]")).to_have_text(VERSION)
    await expect(card.locator("[data-fact=slots]")).to_contain_text("of")
    await expect(card.locator(".warning")).to_be_hidden()

    await page.get_by_test_id("action-ping-local").click()
    result = card.locator(".action-result")
    await expect(result).to_contain_text("ping: job")
    await expect(result.locator(".badge")).to_have_text("completed", timeout=UI_TIMEOUT_MS)

    # A version pip could never read: refused by the api, said beside the version field.
    form = card.locator("form[data-action=update_borg]")
    await form.locator("input[name=version]").fill("not a version")
    await page.get_by_test_id("action-update_borg-local").click()
    await expect(form.locator("[data-error-for='options.version']")).to_contain_text("version")

    # An agent that went away an hour ago, and a job for its repository: flagged, without a reload.
    await database(
        system,
        "INSERT INTO agents (name, host, last_seen, borg_version, borgflow_version, slots, interval_s)"
        " VALUES ('web-1', 'web', now() - interval '1 hour', '1.2.8', '0.0.9', 2, 5)",
    )
    far = system.ok("POST", "/api/repositories", {"name": "web", "location": "/srv/borg/web", "agent": "web-1"})
    system.ok("POST", "/api/jobs", {"type": "check", "repository_id": far["id"]})
    gone = page.get_by_test_id("agent-web-1")
    await expect(gone.locator(".state")).to_have_text("offline", timeout=UI_TIMEOUT_MS)
    await expect(gone.locator(".warning")).to_contain_text("only agent that can run its 1 queued job")
    await expect(card.locator(".warning")).to_be_hidden()
    await page.screenshot(path=screenshots / "agents.png", full_page=True)
    await page.get_by_role("link", name="Settings", exact=True).click()
    await page.wait_for_url("**/settings")


async def check_settings(system: UpSystem, page: Page, repo: dict[str, Any], screenshots: Path) -> None:
    form = page.get_by_test_id("settings-form")
    field = form.locator("input[name=max_concurrent_jobs]")
    await expect(field).to_have_value(str(system.ok("GET", "/api/settings")["max_concurrent_jobs"]))
    await field.fill("many")
    await page.get_by_test_id("settings-save").click()
    await expect(form.locator("[data-error-for=max_concurrent_jobs]")).to_contain_text("max_concurrent_jobs")
    await field.fill("7")
    await page.get_by_test_id("settings-save").click()
    await expect(form.locator(".form-result")).to_contain_text("Saved")
    assert system.ok("GET", "/api/settings")["max_concurrent_jobs"] == 7

    # A schedule made through the form: a bad cron is named beside the cron field, then it is made.
    await page.locator("#schedules summary").click()
    new = page.get_by_test_id("schedule-new")
    await new.locator("input[name=name]").fill("hourly check")
    await new.locator("input[name=cron]").fill("every hour")
    await new.locator("textarea[name=job]").fill(f'{{"type": "check", "repository_id": "{repo["id"]}"}}')
    await new.get_by_role("button", name="Create schedule").click()
    await expect(new.locator("[data-error-for=cron]")).not_to_be_empty()
    await new.locator("input[name=cron]").fill("0 * * * *")
    await new.get_by_role("button", name="Create schedule").click()
    await expect(page.locator("#schedules .rows [data-testid^=schedule-]")).to_have_count(2)  # the nightly one too
    made = next(s for s in system.ok("GET", "/api/schedules")["items"] if s["name"] == "hourly check")
    row = page.get_by_test_id(f"schedule-{made['id']}")
    await expect(row).to_contain_text("next")

    # Disabled from its row, and deleted through the confirmation.
    await row.locator("input[name=enabled]").uncheck()
    await row.get_by_role("button", name="Save").click()
    await expect(row.locator(".form-result")).to_have_text("Saved.")
    assert system.ok("GET", f"/api/schedules/{made['id']}")["enabled"] is False

    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.once("dialog", accept)
    await row.get_by_role("button", name="Delete").click()
    await expect(row).to_have_count(0)

    # A notification target, its URL kept masked.
    await page.locator("#notifications summary").click()
    target = page.get_by_test_id("notification-new")
    await target.locator("input[name=name]").fill("ops")
    await target.locator("input[name=url]").fill("json://127.0.0.1:9/hook")
    await target.get_by_role("button", name="Create target").click()
    await expect(page.locator("#notifications .rows [data-testid^=notification-]")).to_have_count(1)
    made_n = next(n for n in system.ok("GET", "/api/notifications")["items"] if n["name"] == "ops")
    await expect(page.get_by_test_id(f"notification-{made_n['id']}")).to_be_visible()
    await page.screenshot(path=screenshots / "settings.png", full_page=True)

    # A viewer sees the same forms, read-only, and is told why.
    viewer = system.ok("POST", "/api/tokens", {"name": "looker", "role": "viewer"})["token"]
    other = await page.context.new_page()  # a tab of its own: its own session storage
    await other.goto(f"{system.base}/settings#token={viewer}")
    await expect(other.locator("#read-only")).to_contain_text("viewer")
    await expect(other.get_by_test_id("settings-form").locator("input[name=max_concurrent_jobs]")).to_be_disabled()
    await expect(other.get_by_test_id("settings-save")).to_be_disabled()
    await other.close()
