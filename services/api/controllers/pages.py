"""The pages: /queue and /queue/{id}, and their static files.

The pages load without a token: they hold no data. Their script reads the token from
the browser session (`/queue#token=T` puts it there) and sends it on every data call.
"""

from __future__ import annotations

import functools
import html
from pathlib import Path

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


@functools.cache
def template(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def _page(name: str, status_code: int = 200, **values: str) -> Response[str]:
    text = template(name)
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
        return _page("queue.html")

    @get("/queue/{job_id:str}", opt=PUBLIC, cache=False)
    async def job(self, job_id: str) -> Response[str]:
        """One job: header, progress, options, live log, error, actions."""
        return _page("job.html", job_id=job_id)


def static_files() -> Router:
    return create_static_files_router(
        path="/static", directories=[STATIC], opt=PUBLIC, include_in_schema=False, name="borgflow-static"
    )
