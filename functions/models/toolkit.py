"""The toolkit module of model nodes: ``llm`` and ``tool_call``, bound to the registry
being loaded (``make_toolkit``), with providers from the environment."""

from functions.models import make_toolkit

__all__ = ["make_toolkit"]
