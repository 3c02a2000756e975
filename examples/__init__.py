"""Runnable applications on dal; each file runs on its own (``python examples/NAME.py``)."""
