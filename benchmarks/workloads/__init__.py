"""The workloads, by name, in the order a full run runs them.

A new workload is a module here with a ``Workload`` subclass, added to ``WORKLOADS``.
"""

from __future__ import annotations

from .base import Case, Workload, available, run_case
from .invalidation import Invalidation
from .mixed import Mixed
from .pool import Pool
from .reads import Hit, Miss, Zipf
from .stampede import Stampede

__all__ = ["WORKLOADS", "Case", "Workload", "available", "run_case"]

#: ``--workload`` names; a full run runs them in this order.
WORKLOADS: dict[str, type[Workload]] = {
    cls.name: cls for cls in (Hit, Miss, Zipf, Mixed, Stampede, Pool, Invalidation)
}
