"""The local stack: Lambda's event sources, Invoke and a token issuer around the handlers."""
