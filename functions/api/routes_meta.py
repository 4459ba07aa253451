"""``/tools`` and ``/health``."""

from __future__ import annotations

from fastapi import APIRouter

from functions.api import __version__
from functions.api.deps import CurrentCaller, Service
from functions.api.models import Health, ToolDescription, ToolList

router = APIRouter(tags=["meta"])


@router.get("/tools", response_model=ToolList, summary="The registered tools")
def list_tools(service: Service, _caller: CurrentCaller) -> ToolList:
    """Every tool graphs may name: description, the state keys it reads and writes."""
    return ToolList(tools=[ToolDescription.model_validate(t) for t in service.tools.describe()])


@router.get("/health", response_model=Health, summary="Liveness")
def health() -> Health:
    """Answers without touching AWS or building the run service."""
    return Health(status="ok", version=__version__)
