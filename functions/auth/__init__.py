"""Who is calling: JWT verification, the caller's identity and what it may see.

On AWS, API Gateway checks every HTTP request's token (the HTTP API's JWT authorizer) and
hands the app its claims; WebSocket connections are checked by this package's own Lambda
authorizer on ``$connect`` (:mod:`functions.auth.authorizer`). The local stack runs the same
verification (:mod:`functions.auth.tokens`) in front of the same handlers.
"""
