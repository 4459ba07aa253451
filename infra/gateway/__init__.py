"""The local API Gateway: the WebSocket API, @connections, and both APIs' authorizers."""
