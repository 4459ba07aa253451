"""The command line: ``hopgraph`` and its client of the HTTP and WebSocket APIs."""
