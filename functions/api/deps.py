"""What routes receive through FastAPI's dependency injection."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from engine.service import RunService
from functions import runtime


def current_service() -> RunService:
    """The process's run service, built on first use (not at import: cold start)."""
    return runtime.service()


Service = Annotated[RunService, Depends(current_service)]
