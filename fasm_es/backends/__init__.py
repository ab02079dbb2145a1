"""Storage backends, one module each, all on the ``eventsourcing`` library's recorders."""
