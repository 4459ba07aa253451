"""The HTTP API: a FastAPI app served on Lambda through Mangum (``handler.handler``).

Resource routes (``/graphs``, ``/runs``, ``/tools``, ``/health``) and the compatibility routes
of earlier engines of this kind (``/graph/...``); OpenAPI at ``/openapi.json``, docs at ``/docs``.
"""

__version__ = "0.1.0"
"""The API's version, as /health reports it (kept equal to pyproject's by a test)."""
