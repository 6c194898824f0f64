"""A template's run trigger, ``POST /v1/opscore/workflows/{workflowId}/runs``, answered by the
gateway itself (see ``fastpath.py``): one per workflow run, as the state reports are six.

It answers a well-formed call by the book: a permitted caller, a valid id, a JSON object that
``RunCreate`` accepts and, when given, a valid ``Idempotency-Key``. Whatever it would refuse it
hands to FastAPI's route (``routes/workflows.py``) untouched, so every refusal keeps its
documented status and error, in FastAPI's order of checks. What the run itself refuses (an
unknown template or version, a reused key, a budget, a size) comes from the same service call
both take, and is answered in the same envelope.
"""

from __future__ import annotations

import logging
import re

from pydantic import ValidationError
from starlette.types import Scope

from ..errors import OpsCoreError
from ..models import ID_PATTERN, IDEMPOTENCY_KEY_PATTERN, RunCreate
from ..security.keys import Caller
from .envelope import UNEXPECTED, from_opscore_error
from .fastpath import PostRoute, Reply, error_reply, header_values

logger = logging.getLogger("opscore.api")

ROUTE = "/v1/opscore/workflows/{workflowId}/runs"
SCOPE = "runs:write"
_PATH = re.compile(r"^/v1/opscore/workflows/([^/]+)/runs$")
_WORKFLOW_ID = re.compile(ID_PATTERN)
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


class RunTriggerRoute(PostRoute):
    """The gateway's fast route (``fastpath.FastRoute``) for a stored template's runs."""

    route = ROUTE
    path = _PATH
    param = "workflowId"

    async def answer(
        self, caller: Caller, params: dict[str, str], body: bytes, scope: Scope
    ) -> Reply | None:
        workflow_id = params["workflowId"]
        if not caller.can(SCOPE) or not _WORKFLOW_ID.match(workflow_id):
            return None
        request = _run_request(body, scope)
        if request is None:
            return None
        found, key = _idempotency_key(scope)
        if not found:
            return None
        try:
            accepted = await self.services.workflow.run_template(
                workflow_id, request, idempotency_key=key
            )
        except OpsCoreError as exc:
            return error_reply(from_opscore_error(exc))
        except Exception:
            logger.exception("unhandled error on POST %s", ROUTE)
            return error_reply(UNEXPECTED)
        return 202, accepted.model_dump_json(by_alias=True).encode(), {}


def _run_request(body: bytes, scope: Scope) -> RunCreate | None:
    """The body as ``RunCreate`` when it is a JSON object sent as ``application/json`` that the
    model accepts; None for anything else (an empty body included), which FastAPI answers."""
    if not body or not _is_json(scope):
        return None
    try:
        return RunCreate.model_validate_json(body)
    except ValidationError:
        return None


def _is_json(scope: Scope) -> bool:
    types = header_values(scope, b"content-type")
    if len(types) != 1:
        return False
    return bool(types[0].split(b";", 1)[0].strip().lower() == b"application/json")


def _idempotency_key(scope: Scope) -> tuple[bool, str | None]:
    """(usable, key): no header at all is usable with no key; one valid header gives its key;
    several, or one the route's pattern refuses, is not usable here."""
    keys = header_values(scope, b"idempotency-key")
    if not keys:
        return True, None
    if len(keys) > 1:
        return False, None
    try:
        key = keys[0].decode("ascii")
    except UnicodeDecodeError:
        return False, None
    return (True, key) if _IDEMPOTENCY_KEY.match(key) else (False, None)
