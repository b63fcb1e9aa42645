"""The pages: /queue, /queue/{id}, /dashboard, /agents and /settings, and their static files.

The pages load without a token: they hold no data. Their script reads the token from
the browser session (`/queue#token=T` puts it there) and sends it on every data call.
"""

from __future__ import annotations

import functools
import html
from pathlib import Path

import msgspec
from litestar import Controller, Response, Router, get
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

HERE = Path(__file__).resolve().parent.parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
PUBLIC = {"exclude_from_auth": True}
HTML = "text/html"
# The pages run only their own scripts, talk only to this api, and never hand the URL on.
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
        "style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


NAV = (("queue", "/queue", "Queue"), ("dashboard", "/dashboard", "Dashboard"), ("agents", "/agents", "Agents"),
       ("settings", "/settings", "Settings"))  # fmt: skip


class Page(msgspec.Struct, frozen=True, kw_only=True):
    """One page: its body (templates/<name>.html) in the layout every page shares."""

    name: str
    title: str
    what: str
    """What its sign-in button opens ("Open the queue")."""
    scripts: tuple[str, ...] = ()
    nav: str = ""
    """The nav entry marked current (default: `name`)."""
    crumb: str = ""
    header_buttons: str = ""


PAGES = {
    "queue": Page(
        name="queue",
        title="Queue",
        what="queue",
        scripts=("queue.js",),
        header_buttons='    <button id="pause" type="button" class="quiet" aria-pressed="false"'
        ' title="Stop applying live updates">Pause</button>\n',
    ),
    "job": Page(
        name="job",
        title="Job {{job_id}}",
        what="job",
        scripts=("job.js",),
        nav="none",
        crumb='    <span class="crumb">›</span>\n    <span class="where">Job</span>\n',
    ),
    "dashboard": Page(name="dashboard", title="Dashboard", what="dashboard", scripts=("charts.js", "dashboard.js")),
    "agents": Page(name="agents", title="Agents", what="agents", scripts=("agents.js",)),
    "settings": Page(name="settings", title="Settings", what="settings", scripts=("settings.js",)),
}


@functools.cache
def template(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


@functools.cache
def layout(name: str) -> str:
    """The page `name` with its body in the shared layout; `{{job_id}}` and the like left to fill."""
    page = PAGES[name]
    current = page.nav or page.name
    mark = ' aria-current="page"'
    nav = "".join(f'<a href="{href}"{mark if key == current else ""}>{label}</a>' for key, href, label in NAV)
    parts = {
        "title": page.title,
        "scripts": "\n".join(f'  <script src="/static/{js}" defer></script>' for js in page.scripts),
        "page": page.name,
        "body_attrs": ' data-job-id="{{job_id}}"' if page.name == "job" else "",
        "nav": nav,
        "crumb": page.crumb,
        "header_buttons": page.header_buttons,
        "what": page.what,
        "content": template(f"{page.name}.html"),
    }
    text = template("layout.html")
    for key, value in parts.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def _page(name: str, status_code: int = 200, **values: str) -> Response[str]:
    text = layout(name)
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", html.escape(value, quote=True))
    return Response(text, media_type=HTML, status_code=status_code, headers=HEADERS)


class PageController(Controller):
    path = "/"
    include_in_schema = False

    @get("/", opt=PUBLIC)
    async def home(self) -> Redirect:
        return Redirect("/queue")

    @get("/queue", opt=PUBLIC, cache=False)
    async def queue(self) -> Response[str]:
        """The Queue page: stat cards, what runs, what waits, what finished; live."""
        return _page("queue")

    @get("/dashboard", opt=PUBLIC, cache=False)
    async def dashboard(self) -> Response[str]:
        """Repository usage, running jobs, the job calendar, latest failures, wait and run times."""
        return _page("dashboard")

    @get("/agents", opt=PUBLIC, cache=False)
    async def agents(self) -> Response[str]:
        """Each agent: online, last seen, versions, slots, running jobs; ping and update actions."""
        return _page("agents")

    @get("/settings", opt=PUBLIC, cache=False)
    async def settings(self) -> Response[str]:
        """System settings, schedules and notification targets, as forms over the api."""
        return _page("settings")

    @get("/queue/{job_id:str}", opt=PUBLIC, cache=False)
    async def job(self, job_id: str) -> Response[str]:
        """One job: header, progress, options, live log, error, actions."""
        return _page("job", job_id=job_id)


def static_files() -> Router:
    return create_static_files_router(
        path="/static", directories=[STATIC], opt=PUBLIC, include_in_schema=False, name="borgflow-static"
    )
