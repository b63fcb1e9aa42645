"""Notification targets: an apprise URL and the events it wants; a test send; its deliveries.

The URL may hold credentials: it is stored as given and shown only masked. A PUT
without `url`, or with the masked form a GET showed, keeps the stored one.
"""

from __future__ import annotations

import asyncpg
import msgspec
from litestar import Controller, Response, delete, get, post, put
from litestar.openapi.datastructures import ResponseSpec

from services.api import filters, patches, queries, scope
from services.api.auth import READ, WRITE, Principal, project_scope
from services.api.controllers import safe_id
from services.api.errors import Invalid, NotFound
from services.api.patches import NotificationPatch
from services.api.runtime import Runtime
from services.api.schemas import (
    Delivery,
    DeliveryList,
    Notification,
    NotificationCreate,
    NotificationList,
    SendResult,
)
from shared import apprise_targets, event_filters, ids
from shared.submit import field_of

READ_ONLY = frozenset({"id", "created_at", "updated_at"})
TEST_EVENT = "test"
TEST_TITLE = "borgflow test notification"
TEST_BODY = "borgflow test notification: if you can read this, borgflow can reach this target."


def _notification(row: asyncpg.Record) -> Notification:
    return Notification(
        id=row["id"],
        project=row["project"],
        name=row["name"],
        url=apprise_targets.masked(row["url"]),
        events=list(row["events"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _check(body: NotificationCreate) -> None:
    """What the schema cannot say; Invalid names the field (never quoting the URL)."""
    for pattern in body.events:
        if not event_filters.valid(pattern):
            raise Invalid(f"events: {pattern!r} is not an event pattern like 'backup.failed' or '*.warning'", "events")
    if not apprise_targets.accepts(body.url):
        raise Invalid("url: apprise does not accept this URL (unknown service, or not a URL it can parse)", "url")


async def _row(rt: Runtime, notification_id: str, principal: Principal) -> asyncpg.Record:
    """The target, or 404 when it is absent or of a project `principal` does not see."""
    row = await queries.notification(rt.pool, safe_id(notification_id, "notification"))
    if row is None:
        raise NotFound(f"no notification target {notification_id}")
    scope.require_visible(principal, row["project"], "notification target", notification_id)
    return row


class NotificationController(Controller):
    path = "/api/notifications"
    tags = ("notifications",)

    @post(opt={"permission": WRITE})
    async def create(self, rt: Runtime, principal: Principal, data: NotificationCreate) -> Notification:
        """`events` defaults to failures and warnings (shared.event_filters.DEFAULT_EVENTS)."""
        scope.require_own_project(principal, data.project)
        _check(data)
        notification_id = ids.new_id()
        await queries.insert_notification(
            rt.pool,
            notification_id=notification_id,
            project=data.project,
            name=data.name,
            url=data.url,
            events=data.events,
        )
        return _notification(await _row(rt, notification_id, principal))

    @get(opt={"permission": READ}, cache=False)
    async def list_all(self, rt: Runtime, principal: Principal) -> NotificationList:
        rows = await queries.notifications(rt.pool, project_scope(principal))
        return NotificationList(items=[_notification(r) for r in rows])

    @get("/{notification_id:str}", opt={"permission": READ}, cache=False)
    async def get_one(self, rt: Runtime, principal: Principal, notification_id: str) -> Notification:
        return _notification(await _row(rt, notification_id, principal))

    @put("/{notification_id:str}", opt={"permission": WRITE})
    async def update(
        self, rt: Runtime, principal: Principal, notification_id: str, data: NotificationPatch
    ) -> Notification:
        """Change the fields given; without `url` (or with the masked one) the stored URL stays."""
        row = await _row(rt, notification_id, principal)
        current = {k: row[k] for k in NotificationCreate.__struct_fields__}
        given = {k: v for k, v in patches.given(data).items() if k not in READ_ONLY}
        if "url" in given and given["url"] == apprise_targets.masked(row["url"]):
            del given["url"]  # sent back as a GET showed it
        try:
            body = msgspec.convert(current | given, NotificationCreate)
        except msgspec.ValidationError as e:
            field = field_of(e)
            raise Invalid(f"{field}: {str(e).split(' - at ')[0]}", field) from None
        _check(body)
        scope.require_own_project(principal, body.project)
        found = await queries.update_notification(
            rt.pool, notification_id, project=body.project, name=body.name, url=body.url, events=body.events
        )
        if not found:
            raise NotFound(f"no notification target {notification_id}")
        return _notification(await _row(rt, notification_id, principal))

    @delete("/{notification_id:str}", opt={"permission": WRITE})
    async def remove(self, rt: Runtime, principal: Principal, notification_id: str) -> None:
        await _row(rt, notification_id, principal)
        async with queries.connection(rt.pool) as conn:
            if not await queries.delete_notification(conn, notification_id):
                raise NotFound(f"no notification target {notification_id}")

    @post(
        "/{notification_id:str}/test",
        status_code=200,
        opt={"permission": WRITE},
        responses={502: ResponseSpec(SendResult, description="The target did not take the message: `detail` says why")},
    )
    async def test(self, rt: Runtime, principal: Principal, notification_id: str) -> Response[SendResult]:
        """Send a test message now: 200 when delivered, 502 with what went wrong."""
        row = await _row(rt, notification_id, principal)
        error = await apprise_targets.send(row["url"], TEST_TITLE, TEST_BODY)
        await queries.record_delivery(
            rt.pool, event_id=ids.new_id(), target_id=row["id"], event_type=TEST_EVENT, job_id=None, error=error
        )
        if error is None:
            return Response(SendResult(delivered=True), status_code=200)
        return Response(SendResult(delivered=False, detail=error), status_code=502)

    @get("/{notification_id:str}/deliveries", opt={"permission": READ}, cache=False)
    async def deliveries(
        self, rt: Runtime, principal: Principal, notification_id: str, limit: int = 50
    ) -> DeliveryList:
        """Deliveries to this target, newest first (test sends included, as `test`)."""
        await _row(rt, notification_id, principal)
        rows = await queries.deliveries(rt.pool, notification_id, filters.parse_limit(limit))
        return DeliveryList(items=[Delivery(**dict(r)) for r in rows])
