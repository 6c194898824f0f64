"""Swagger UI and ReDoc from files shipped with the package (fastapi-offline's copies), not a
CDN: the API docs work on a machine with no internet, and load nothing from third parties."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

router = APIRouter(include_in_schema=False)
ASSETS = Path(str(resources.files("fastapi_offline") / "static"))
_TYPES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
CACHE = {"Cache-Control": "public, max-age=86400"}


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    app = request.app
    return get_swagger_ui_html(
        openapi_url=app.openapi_url,
        title=f"{app.title} - Swagger UI",
        swagger_js_url="/docs-assets/swagger-ui-bundle.js",
        swagger_css_url="/docs-assets/swagger-ui.css",
        swagger_favicon_url="/docs-assets/favicon.png",
        swagger_ui_parameters=app.swagger_ui_parameters,
    )


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    app = request.app
    return get_redoc_html(
        openapi_url=app.openapi_url,
        title=f"{app.title} - ReDoc",
        redoc_js_url="/docs-assets/redoc.standalone.js",
        redoc_favicon_url="/docs-assets/favicon.png",
        with_google_fonts=False,
    )


@router.get("/docs-assets/{name}")
async def asset(
    name: Annotated[
        Literal["swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"],
        PathParam(),
    ],
) -> FileResponse:
    """Only these four files: the name is one of a fixed set, so no path tricks."""
    return FileResponse(ASSETS / name, media_type=_TYPES[name], headers=CACHE)
