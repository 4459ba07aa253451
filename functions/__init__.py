"""hopgraph on AWS: Lambda handlers (one folder per trigger) and the AWS adapters."""
