"""A user's project: its folder, its settings (``[tool.hopgraph]``), ``hopgraph init``, and
the build of its Lambda code beside the engine."""
