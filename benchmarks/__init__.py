"""The dal benchmark: dal against no cache and the caches users pick, in one run.

Run it from the repository root with ``python -m benchmarks`` (``--help`` lists the
options). Every competitor reads the same rows with the same request sequence,
interleaved over several repetitions; the report gives medians.

The modules, by job: ``__main__`` (the command line and one run), ``config`` (settings,
what a run shares), ``data`` (the table, key sequences, Core statements), ``drivers``
(engines, statement counters, raw floors per driver), ``base`` (the competitor and
workload interfaces, their registries, the case driver), ``competitors`` and
``workloads`` (the sync ones), ``aio`` (the async ones), ``invalidation`` (the
PostgreSQL bus), ``measure`` (clocks, threads, coroutines, stale reads, memory),
``results`` (medians and targets), ``report`` and ``plot`` (what the user sees).

Adding a competitor or a workload is one registration: a class with ``@competitor``
or ``@workload`` (see ``base``) in any module here.
"""

__all__: list[str] = []
