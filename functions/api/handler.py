"""Lambda entry point of the HTTP API (API Gateway HTTP API, payload format 2.0)."""

from mangum import Mangum

from functions.api.app import create_app

# lifespan="off": the app has no startup work; the run service is built on first request.
handler = Mangum(create_app(), lifespan="off")
