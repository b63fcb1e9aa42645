"""Apprise URLs: accept, mask, send one message.

The notifier delivers events with it and the api sends its test messages with it.
An apprise URL may hold credentials: what leaves here for a client is always the
masked form, and error words are scrubbed of every part of the URL that the masked
form hides.
"""

from __future__ import annotations

import asyncio
import logging
import re
from urllib.parse import unquote

import apprise

# A mask for a URL apprise cannot even parse back (it accepted it when it was stored).
HIDDEN = "********"
SEND_TIMEOUT_S = 30.0
_URL_PARTS = re.compile(r"[/:@?&=#,;+]+")


def accepts(url: str) -> bool:
    """Whether apprise knows the URL's service and can parse it."""
    return bool(apprise.Apprise().add(url))


def masked(url: str) -> str:
    """The URL as apprise shows it in privacy mode: passwords and tokens starred out."""
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return HIDDEN
    return str(plugin.url(privacy=True))  # type: ignore[no-untyped-call]


def scrub(text: str, url: str) -> str:
    """`text` without any part of `url` that its masked form hides (a password, a token)."""
    shown = masked(url)
    for piece in sorted(set(_URL_PARTS.split(url)), key=len, reverse=True):
        for form in {piece, unquote(piece)}:
            if len(form) >= 3 and form not in shown:
                text = text.replace(form, "****")
    return text


def warm_up() -> None:
    """Load apprise's plugins now (about half a second), not on the first event's clock."""
    apprise.Apprise().add("json://localhost")


async def send(url: str, title: str, body: str, timeout: float = SEND_TIMEOUT_S) -> str | None:
    """Send one notification; None when delivered, else what went wrong in words (no secrets)."""
    ap = apprise.Apprise()
    if not ap.add(url):
        return "the apprise URL is not valid or its service is not supported"
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:  # type: ignore[no-untyped-call]
        try:
            ok = await asyncio.wait_for(ap.async_notify(body=body, title=title), timeout)
        except TimeoutError:
            return f"no answer within {timeout:.0f} s"
    if ok:
        return None
    lines = [line.strip() for line in captured.getvalue().splitlines() if line.strip()]
    words = "; ".join(dict.fromkeys(lines)) or "delivery failed (apprise gave no reason)"
    return scrub(words, url)[:500]
