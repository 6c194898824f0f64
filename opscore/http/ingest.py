"""AgentKit's state report, the hottest call Ops-Core serves, answered by the gateway itself.

Every agent reports every state change, so this one request dominates the load. The middleware
has already authenticated the caller, applied the rate limit and read the bounded body; going
through FastAPI's router, its exception middleware and its request object on top of that
roughly doubled the cost of a report. Here it is one regex match, one pydantic parse of the raw
bytes, the lifecycle service, and one serialisation. The FastAPI route in ``http/routes/state.py``
documents the call in OpenAPI and answers through this same function, so both give identical
answers.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from pydantic import ValidationError
from starlette.types import Scope

from ..errors import OpsCoreError
from ..models import ID_PATTERN, StateReport
from ..security.keys import Caller
from .envelope import UNEXPECTED, from_opscore_error, from_validation_errors
from .fastpath import PostRoute, Reply, error_reply

if TYPE_CHECKING:
    from ..container import Services

logger = logging.getLogger("opscore.api")

ROUTE = "/v1/opscore/agent/{agentId}/state"
_PATH = re.compile(r"^/v1/opscore/agent/([^/]+)/state$")
_AGENT_ID = re.compile(ID_PATTERN)


class StateReportRoute(PostRoute):
    """The gateway's fast route (``fastpath.FastRoute``) for state reports: it answers every one,
    errors included, through ``report_state``, as the documented route does."""

    route = ROUTE
    path = _PATH
    param = "agentId"

    async def answer(
        self, caller: Caller, params: dict[str, str], body: bytes, scope: Scope
    ) -> Reply:
        return await report_state(self.services, caller, params["agentId"], body)


async def report_state(services: Services, caller: Caller, agent_id: str, body: bytes) -> Reply:
    """Status, JSON body and extra headers for one state report; never raises."""
    try:
        if not _AGENT_ID.match(agent_id):
            message = f"String should match pattern '{ID_PATTERN}'"
            return error_reply(
                from_validation_errors(
                    [
                        {
                            "loc": ("path", "agentId"),
                            "msg": message,
                            "type": "string_pattern_mismatch",
                        }
                    ]
                )
            )
        caller.require("state:write")
        caller.require_agent(agent_id)
        try:
            report = StateReport.model_validate_json(body)
        except ValidationError as exc:
            errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            return error_reply(from_validation_errors(errors))
        accepted = await services.states.report_state(agent_id, report)
        await services.dispatcher.wakeup.let_the_woken_pass_go_first()
        return 202, accepted.model_dump_json(by_alias=True).encode(), {}
    except OpsCoreError as exc:
        return error_reply(from_opscore_error(exc))
    except Exception:
        logger.exception("unhandled error on POST %s", ROUTE)
        return error_reply(UNEXPECTED)
