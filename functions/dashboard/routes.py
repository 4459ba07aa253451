"""``/ui`` and ``/ui/assets/{file}``: the dashboard's page and its files.

The page's own code is in ``static/`` (plain HTML, CSS and one script, no build). Third-party
code (Mermaid, which draws the graphs) is pinned in ``package.json``/``package-lock.json``;
``make`` installs it with ``npm ci`` and copies the files the page loads into
``static/vendor/`` (gitignored), so the Lambda package ships them and no page ever reaches a
CDN. Large files are served gzipped (``NAME.gz`` beside them) to browsers that accept it:
Mermaid's bundle is 5.7 MB, too close to Lambda's 6 MB response limit to go as it is.

These routes need no token (template.yaml: ``Auth: {Authorizer: NONE}``), as a browser sends
none for a page or its scripts; the page signs in and sends a bearer token to the API.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException

STATIC = Path(__file__).parent / "static"
VENDOR = STATIC / "vendor"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The page's own files change with a deployment: a browser asks again each time. The pinned
# third-party files are large and change only with their pin: kept for an hour.
NO_CACHE = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
KEEP = {"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"}

router = APIRouter(tags=["dashboard"], include_in_schema=False)


@lru_cache(maxsize=1)
def assets() -> dict[str, Path]:
    """Every file the page may load, by the name it loads it by (one path segment)."""
    found: dict[str, Path] = {}
    for folder in (STATIC, VENDOR):
        if folder.is_dir():
            for path in folder.iterdir():
                if path.is_file() and path.suffix in MEDIA_TYPES:
                    found[path.name] = path
    return found


def _file(path: Path, request: Request) -> Response:
    media_type = MEDIA_TYPES[path.suffix]
    cache = KEEP if path.parent == VENDOR else NO_CACHE
    gzipped = path.with_name(path.name + ".gz")
    accepts = request.headers.get("accept-encoding", "")
    if gzipped.is_file() and "gzip" in accepts:
        headers = {**cache, "Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
        return Response(gzipped.read_bytes(), media_type=media_type, headers=headers)
    return Response(path.read_bytes(), media_type=media_type, headers=cache)


@router.get("/ui")
def page(request: Request) -> Response:
    """The dashboard (one page; the part after ``#`` says which view)."""
    return _file(STATIC / "index.html", request)


@router.get("/ui/assets/{name}")
def asset(name: str, request: Request) -> Response:
    """A file of the page; 404 for any other name (nothing outside the two folders)."""
    path = assets().get(name)
    if path is None:
        hint = " (run `make` to install the dashboard's files)" if name.endswith(".js") else ""
        raise HTTPException(404, f"no dashboard file {name!r}{hint}")
    return _file(path, request)
