"""The operator console: static files (ES modules, no build step), no key needed to load them
(the page asks for one)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, get_args

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse

router = APIRouter(tags=["dashboard"], include_in_schema=False)
STATIC = Path(__file__).resolve().parent.parent / "dashboard"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# the console's files, and only they, may be asked for (the path parameter is this Literal)
FileName = Literal[
    "app.js", "ui.js", "runs.js", "fleet.js", "work.js", "logs.js", "style.css", "index.html"
]
FILES: tuple[str, ...] = get_args(FileName)
_TYPES = {name: "text/javascript" for name in FILES if name.endswith(".js")} | {
    "style.css": "text/css",
    "index.html": "text/html",
}


@router.get("/dashboard")
async def dashboard() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=SECURITY_HEADERS)


@router.get("/dashboard/{name}")
async def dashboard_file(
    name: Annotated[FileName, PathParam()],
) -> FileResponse:
    """Only the dashboard's own files: the name is one of a fixed set, so no path tricks."""
    return FileResponse(STATIC / name, media_type=_TYPES[name], headers=SECURITY_HEADERS)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/dashboard")
