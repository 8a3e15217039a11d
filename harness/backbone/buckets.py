"""Length buckets: a batch of right-padded sequences run as a few sub-batches of similar lengths, each cut to its
own longest sequence, so padded positions are mostly not computed (docs/design.md §3).

Each sequence's result depends on its own tokens alone (causal attention, padding masked), so the outputs are
those of the padded batch, up to the order of float sums (``tests/test_buckets.py``). Where to cut is the
split of the sorted lengths that minimises the positions computed plus ``OVERHEAD`` per extra forward call
(dynamic programming); a batch whose lengths are close stays one call.
"""
from __future__ import annotations

import torch

#: the cost of one more forward call, in positions: measured on the tiny model on 2 CPU cores, a call's
#: fixed cost (Python, kernel launches, smaller matmuls) is worth ~256 positions of work
OVERHEAD = 256


def cheapest_split(order: list[int], segment_costs) -> list[list[int]]:
    """``order`` (rows in the order buckets may cut them) split into contiguous buckets of least total cost, exactly
    (dynamic programming): ``segment_costs(j)`` yields the cost of the bucket ``order[i:j]`` for i = j-1 down to 0."""
    n = len(order)
    best = [0.0] + [float("inf")] * n  # best[j]: cost of the first j rows
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i, cost in zip(range(j - 1, -1, -1), segment_costs(j)):
            if best[i] + cost <= best[j]:  # equal costs: the longest last bucket (the smallest i)
                best[j], cut[j] = best[i] + cost, i
    groups, j = [], n
    while j > 0:
        groups.append(order[cut[j]:j])
        j = cut[j]
    return groups[::-1]


def split(lengths: list[int], overhead: int | None = None) -> list[list[int]]:
    """Row indices grouped into buckets of similar length (the cheapest split of the sorted lengths)."""
    overhead = OVERHEAD if overhead is None else overhead
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])

    def costs(j):  # rows i..j-1, padded to the longest, order[j-1]
        longest = lengths[order[j - 1]]
        for i in range(j - 1, -1, -1):
            yield (j - i) * longest + overhead
    return cheapest_split(order, costs)


def computed_positions(lengths: list[int], overhead: int | None = None, groups: list[list[int]] | None = None) -> int:
    """Positions the bucketed forward computes for sequences of these lengths (padding within buckets included)."""
    return sum(len(g) * max(lengths[i] for i in g) for g in groups or split(lengths, overhead))


def rows(t: dict[str, torch.Tensor], idx: list[int]) -> dict[str, torch.Tensor]:
    """The collated batch's rows ``idx``, the model inputs cut to the longest of them."""
    n = t["input_ids"].size(0)
    index = torch.tensor(idx, device=t["input_ids"].device)
    out = {k: v.index_select(0, index) if torch.is_tensor(v) and v.dim() and v.size(0) == n else v
           for k, v in t.items()}
    width = int(out["attention_mask"].sum(1).max())
    out["input_ids"], out["attention_mask"] = out["input_ids"][:, :width], out["attention_mask"][:, :width]
    return out


def bucketed(fn, t: dict[str, torch.Tensor], overhead: int | None = None, groups: list[list[int]] | None = None):
    """``fn(t)`` (a tuple of ``[B, ...]`` tensors, Nones and dicts of tensors) computed bucket by bucket (``groups``
    of rows, by default ``split`` of the lengths) and put back in the batch's row order."""
    groups = groups or split(t["attention_mask"].sum(1).tolist(), overhead)
    if len(groups) == 1:
        return fn(t)
    parts = [fn(rows(t, g)) for g in groups]
    order = torch.tensor([i for g in groups for i in g], device=t["input_ids"].device)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order), device=order.device)

    def join(xs):
        if xs[0] is None:
            return None
        if isinstance(xs[0], dict):
            return {k: join([x[k] for x in xs]) for k in xs[0]}
        return torch.cat(xs).index_select(0, inverse)
    return tuple(join([p[i] for p in parts]) for i in range(len(parts[0])))
