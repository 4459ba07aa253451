"""AWS adapters of the engine's ports, and the boto3 client factory."""
