"""``/tools``, ``/me``, ``/health``, and ``/`` pointing to the docs."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

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
    """Answers without touching AWS or building the run service; says where the WebSocket
    API is, when this deployment has one."""
    return Health(status="ok", version=__version__, websocket=websocket_url())


@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    """A person who opens the API's address finds its documentation."""
    return RedirectResponse("docs", status_code=307)


def websocket_url() -> str | None:
    """The WebSocket API's address for clients: its Management API endpoint (``https://``,
    or ``http://`` locally) in the client's scheme."""
    from functions.settings import SettingsError, get_settings

    try:
        endpoint = get_settings().ws_endpoint
    except SettingsError:
        return None
    if not endpoint:
        return None
    return "ws" + endpoint.removeprefix("http") if endpoint.startswith("http") else endpoint
