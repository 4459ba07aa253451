"""Local stack, command line and template reader: everything that runs outside Lambda."""
