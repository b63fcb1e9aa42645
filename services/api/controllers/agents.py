"""GET /api/agents: executors as their heartbeats report them."""

from __future__ import annotations

from litestar import Controller, get

from services.api import queries
from services.api.auth import READ, Principal, project_scope
from services.api.runtime import Runtime
from services.api.schemas import Agent, AgentList


class AgentController(Controller):
    path = "/api/agents"
    tags = ("agents",)

    @get(opt={"permission": READ}, cache=False)
    async def list_all(self, rt: Runtime, principal: Principal) -> AgentList:
        """`online`: a heartbeat within 3 intervals; `running`: its sent and running jobs, `queued`:
        how many of its jobs wait to be sent (of the token's project, for a token limited to one);
        `borgflow_version`: what its executor runs."""
        rows = await queries.agents(rt.pool, project_scope(principal))
        return AgentList(
            items=[
                Agent(
                    name=r["name"],
                    online=bool(r["online"]),
                    last_seen=r["last_seen"],
                    host=r["host"],
                    borg_version=r["borg_version"],
                    slots=r["slots"],
                    interval_s=r["interval_s"],
                    running=list(r["running"]),
                    borgflow_version=r["borgflow_version"],
                    queued=r["queued"],
                )
                for r in rows
            ]
        )
