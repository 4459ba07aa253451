"""The dead-letter consumer's run service: the store, the notifier, and no tools.

Not :func:`functions.runtime.service`: that one loads the toolkits named by
``HOPGRAPH_TOOLKITS``, and a toolkit that fails to import is one of the failures this
consumer exists to report. Failing a run never runs a tool.
"""

from __future__ import annotations

import threading

from engine.service import RunService
from engine.tools import Toolkit
from functions import runtime
from functions.settings import Settings, get_settings

_built: tuple[Settings, RunService] | None = None
_lock = threading.Lock()


def service() -> RunService:
    """Built on first use from the settings; rebuilt when the settings are read anew."""
    global _built
    settings = get_settings()
    with _lock:
        if _built is None or _built[0] is not settings:
            _built = (settings, build_service(settings))
        return _built[1]


def build_service(settings: Settings) -> RunService:
    store = runtime.build_store(settings)
    return RunService(
        store,
        runtime.build_queue(settings),
        Toolkit("none"),
        notifier=runtime.build_notifier(settings, store),
        config=runtime.engine_config(settings),
    )
