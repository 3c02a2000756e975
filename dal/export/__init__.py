"""Exports of ``Database.stats()``: Prometheus and OpenTelemetry, imported only by who uses
them."""
