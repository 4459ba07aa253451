"""The sweeper: re-sends the hops of running runs that made no progress for a lease."""
