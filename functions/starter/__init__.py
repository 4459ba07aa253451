"""The run starter: starts the runs requested on the run-requests SQS queue."""
