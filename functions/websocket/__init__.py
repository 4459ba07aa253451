"""The WebSocket API's Lambda: connect, disconnect, subscribe to runs, unsubscribe.

Clients subscribe to runs (``{"action": "subscribe", "run_id": ...}``, or ``?run_id=`` on
connect) and receive every step and run event as JSON text messages (engine/events.py).
"""
