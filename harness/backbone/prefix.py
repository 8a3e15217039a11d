"""Each prompt computed once (docs/design.md §3): the completions of one prompt in a batch (a DPO pair, a prompt's bank
samples, a GRPO group) share one forward pass of it.

The batch's distinct prompts run first, left-padded, filling a KV cache. The cache is indexed out to every completion
row (``index_select``: the gradient reaching a prompt position is the sum over that prompt's completions), and the
completions run on top of it, right-padded, at positions ``prompt_len + j``. The output that predicts completion
token 0 (its logit; V(s_0) for a value model) is the prompt pass's last position; token j > 0 is predicted by the
completion pass's position j - 1, so the last completion token is never fed. Causal attention and the padding mask
make every result that of the full padded pass, up to the order of float sums (``tests/test_prefix.py``).

It needs a KV cache through the forward pass, which transformers turns off under gradient checkpointing (the
recomputed backward would append to the cache twice): the Agent then takes the padded or bucketed path.
"""
from __future__ import annotations

import torch

from harness.backbone import buckets


def layout(t: dict[str, torch.Tensor]) -> dict:
    """The two passes' inputs for a collated batch (``harness.backbone.sequences.collate``, with ``prompt_len`` and
    ``prompt_group``): ``prompt_ids``/``prompt_mask``/``prompt_pos`` ``[U, P]`` (the distinct prompts,
    left-padded), ``group`` ``[B]`` (each row's prompt), ``comp_ids``/``comp_mask``/``comp_pos`` ``[B, C]`` (every
    completion token but the longest row's last), ``full_mask`` ``[B, P + C]`` (the cache's mask, then the
    completion's) and ``width``, the batch's completion width T."""
    dev = t["input_ids"].device
    groups, group = torch.unique(t["prompt_group"], return_inverse=True)
    first = torch.zeros(len(groups), dtype=torch.long, device=dev).scatter_(0, group, torch.arange(len(group), device=dev))
    plen = t["prompt_len"].index_select(0, first)
    src = torch.arange(int(plen.max()), device=dev)[None] - (int(plen.max()) - plen)[:, None]  # < 0: padding
    prompt_mask = (src >= 0).long()
    c = max(int(t["mask"].sum(1).max()) - 1, 1)
    comp_mask = t["mask"][:, :c].long()
    return {"prompt_ids": t["input_ids"].index_select(0, first).gather(1, src.clamp(min=0)),
            "prompt_mask": prompt_mask, "prompt_pos": (prompt_mask.cumsum(1) - 1).clamp(min=0), "group": group,
            "comp_ids": t["completion_ids"][:, :c], "comp_mask": comp_mask,
            "comp_pos": t["prompt_len"][:, None] + torch.arange(c, device=dev),
            "full_mask": torch.cat([prompt_mask.index_select(0, group), comp_mask], 1), "width": t["mask"].size(1)}


def split(t: dict[str, torch.Tensor], overhead: int | None = None) -> list[list[int]]:
    """Row indices in buckets, each run as its own two passes: the rows sorted by completion length (then prompt
    length) and cut where the positions saved are worth two more calls (``overhead`` positions a call). A bucket
    costs its distinct prompts x their longest plus its rows x its longest completion fed; a prompt whose rows land
    in two buckets is computed in each, which the cost counts. Exact dynamic programme over the cuts."""
    overhead = buckets.OVERHEAD if overhead is None else overhead
    plen, group = t["prompt_len"].tolist(), t["prompt_group"].tolist()
    fed = (t["mask"].sum(1) - 1).clamp(min=1).tolist()
    order = sorted(range(len(fed)), key=lambda i: (fed[i], plen[i]))

    def costs(j):  # rows i..j-1: their distinct prompts x the longest of those, rows x the longest fed
        prompts, longest_prompt, longest = set(), 0, fed[order[j - 1]]
        for i in range(j - 1, -1, -1):
            prompts.add(group[order[i]])
            longest_prompt = max(longest_prompt, plen[order[i]])
            yield len(prompts) * longest_prompt + (j - i) * longest + 2 * overhead
    return buckets.cheapest_split(order, costs)


def cost(t: dict[str, torch.Tensor], groups: list[list[int]], overhead: int | None = None) -> float:
    """Positions the buckets ``groups`` compute, plus ``overhead`` per call (two a bucket)."""
    overhead = buckets.OVERHEAD if overhead is None else overhead
    plen, group = t["prompt_len"].tolist(), t["prompt_group"].tolist()
    fed = (t["mask"].sum(1) - 1).clamp(min=1).tolist()
    return sum(len({group[i] for i in g}) * max(plen[i] for i in g) + len(g) * max(fed[i] for i in g) + 2 * overhead
               for g in groups)


def counts(lay: dict) -> tuple[int, int]:
    """``(real, computed)``: the tokens the two passes run that are not padding (each distinct prompt once, then the
    completions), and the positions they compute, padding included."""
    return (int(lay["prompt_mask"].sum() + lay["comp_mask"].sum()),
            lay["prompt_ids"].numel() + lay["comp_ids"].numel())


def run(module, lay: dict[str, torch.Tensor], *, lm: bool, hidden: bool):
    """``(logits, hidden)`` ``[B, T, ...]`` at the positions that predict each completion token (``T`` the batch's
    completion width, zeros past a row's end; ``None`` for what was not asked): ``module`` is a causal LM (``lm``:
    its logits, and with ``hidden`` its last hidden states) or a decoder trunk (its ``last_hidden_state``)."""
    kw = {"output_hidden_states": True} if lm and hidden else {}
    if lm:
        kw["logits_to_keep"] = 1  # the prompt pass's logits: its last position only
    first = module(input_ids=lay["prompt_ids"], attention_mask=lay["prompt_mask"], position_ids=lay["prompt_pos"],
                   use_cache=True, **kw)
    cache = first.past_key_values
    cache.reorder_cache(lay["group"])  # index_select per layer: every row gets its prompt's keys and values
    kw.pop("logits_to_keep", None)
    rest = module(input_ids=lay["comp_ids"], attention_mask=lay["full_mask"], position_ids=lay["comp_pos"],
                  past_key_values=cache, use_cache=True, **kw)
    group, width = lay["group"], lay["width"]

    def join(a, b):  # prompt's last position (per row), then the completion pass's positions, cut to the batch's T
        out = torch.cat([a[:, -1:].index_select(0, group), b], 1)[:, :width]
        pad = [0, 0] * (out.dim() - 2) + [0, width - out.size(1)]
        return torch.nn.functional.pad(out, pad) if width > out.size(1) else out

    logits = join(first.logits, rest.logits) if lm else None
    if not hidden:
        return logits, None
    h = (lambda o: o.hidden_states[-1]) if lm else (lambda o: o.last_hidden_state)
    return logits, join(h(first), h(rest))
