"""The in-memory store: entries under one lock, single flight, lease-checked fills, keys and
bounds. It does no I/O."""
