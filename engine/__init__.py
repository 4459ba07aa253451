"""hopgraph engine: the pure core (graphs, conditions, tools, the step protocol, runners).

Nothing here talks to AWS or reads the process environment; adapters in ``functions/``
implement the ports of :mod:`engine.ports`.
"""
