"""``/tools``, ``/me`` and ``/health``."""

from __future__ import annotations

from fastapi import APIRouter

from functions.api import __version__
from functions.api.deps import CurrentCaller, Service
from functions.api.models import Health, Me, ToolDescription, ToolList

router = APIRouter(tags=["meta"])


@router.get("/tools", response_model=ToolList, summary="The registered tools")
def list_tools(service: Service, _caller: CurrentCaller) -> ToolList:
    """Every tool graphs may name: description, the state keys it reads and writes."""
    return ToolList(tools=[ToolDescription.model_validate(t) for t in service.tools.describe()])


@router.get("/me", response_model=Me, summary="Who the caller is")
def me(caller: CurrentCaller) -> Me:
    """The token's user and whether it is an admin, and the WebSocket API's URL: what a
    client (the dashboard at `/ui`) needs once signed in."""
    from functions.settings import get_settings

    return Me(user=caller.sub, admin=caller.admin, websocket_url=get_settings().ws_url or None)


@router.get("/health", response_model=Health, summary="Liveness")
def health() -> Health:
    """Answers without touching AWS or building the run service."""
    return Health(status="ok", version=__version__)
