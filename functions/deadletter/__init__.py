"""Consumer of the step dead-letter queue: a hop AWS gave up on fails its run."""
