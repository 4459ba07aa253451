"""The one loader of the real-shaped AWS events in ``events/*.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of ``events/<name>.json`` (``name`` with or without ``.json``)."""
    path = EVENTS_DIR / f"{name.removesuffix('.json')}.json"
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
