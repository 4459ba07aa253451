"""The dashboard at ``/ui``: a static page that watches and steers runs through the public API
and WebSocket, and the pinned third-party files it loads (Mermaid), served by the API."""
