"""The step worker: applies one hop per SQS message or per asynchronous self-invocation."""
