"""The dal benchmark: dal against no cache, cachetools and dogpile.cache, in one run.

Run it from the repository root with ``python -m benchmarks`` (``--help`` lists the
options). Every competitor reads the same rows with the same request sequence,
interleaved over several repetitions; the report gives medians.
"""

__all__: list[str] = []
