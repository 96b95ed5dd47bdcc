"""Which examples each rank evaluates: contiguous shards in rank order."""
from __future__ import annotations

from distsnn.errors import UserError


class ShardError(UserError, ValueError):
    """More ranks than examples: some rank would have nothing to evaluate."""


def shard_bounds(n: int, rank: int, size: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of ``n`` examples that rank ``rank`` of ``size`` evaluates.

    Contiguous shards as :func:`numpy.array_split` makes them: the first ``n % size`` ranks
    get one example more. Every example belongs to exactly one rank.
    """
    if size < 1:
        raise ValueError(f"size must be at least 1 (got {size})")
    if not 0 <= rank < size:
        raise ValueError(f"rank must be in 0..{size - 1} (got {rank})")
    if n < 0:
        raise ValueError(f"number of examples must be non-negative (got {n})")
    if size > n:
        raise ShardError(f"more ranks than examples: {size} ranks for n={n} examples; every "
                         f"rank needs at least one example: run with at most {n} ranks "
                         "(or use a larger test set)")
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)
