"""Prompt+completion sequences as padded tensors, and per-token log-probs of the completion.

A *sequence* is a dict with ``prompt_ids`` and ``completion_ids`` (lists of ints) and optionally
``ref_logps`` (one float per completion token), ``reward`` and ``shaping`` (per-token process-value
shaping). Completion tensors are ``[B, T]``, right-padded, with ``mask`` 1 on real tokens: the layout
every loss in ``algorithms/`` takes. Rollouts of the online loop also carry ``ROLLOUT_FIELDS``; the
fields a plug-in adds are the ones it declares (``token_fields``, ``sequence_fields``).
"""
from __future__ import annotations

import torch
from trl.trainer.utils import entropy_from_logits, selective_log_softmax

#: per-token fields the online loop gives every rollout (π_old's log-probs; the critic's values)
ROLLOUT_FIELDS = ("old_logps", "old_values")

#: extra per-token model outputs a plug-in may ask for (``outputs``), each from the logits ``[B, T, V]``
#: that predict the completion tokens
MODEL_OUTPUTS = {
    "logsumexp": lambda logits: torch.logsumexp(logits, dim=-1),  # log Σ_a exp logit(s_h, a)
    "entropy": entropy_from_logits,  # H(π(·|s_h))
}


def collate(seqs: list[dict], pad_id: int, device=None, token_fields=(), sequence_fields=()) -> dict[str, torch.Tensor]:
    """Right-padded model inputs plus completion-aligned tensors for a list of sequences; the rollout fields
    and the given ``token_fields`` / ``sequence_fields`` when every sequence has them."""
    full = [s["prompt_ids"] + s["completion_ids"] for s in seqs]
    width = max(map(len, full))
    tmax = max(len(s["completion_ids"]) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(seqs), width), dtype=torch.long)
    # Position in input_ids of the logit that predicts completion token j: prompt_len - 1 + j.
    pred_pos = torch.zeros((len(seqs), tmax), dtype=torch.long)
    completion_ids = torch.full((len(seqs), tmax), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), tmax))
    ref = torch.zeros((len(seqs), tmax))
    token_rewards = torch.zeros((len(seqs), tmax))
    # which rows share a prompt (``harness/backbone/prefix.py`` computes each distinct prompt once)
    groups: dict[tuple, int] = {}
    prompt_group = torch.tensor([groups.setdefault(tuple(s["prompt_ids"]), len(groups)) for s in seqs])
    prompt_len = torch.tensor([len(s["prompt_ids"]) for s in seqs])
    for i, (s, ids) in enumerate(zip(seqs, full)):
        p, c = len(s["prompt_ids"]), len(s["completion_ids"])
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention_mask[i, : len(ids)] = 1
        pred_pos[i, :c] = torch.arange(p - 1, p - 1 + c)
        completion_ids[i, :c] = torch.tensor(s["completion_ids"])
        mask[i, :c] = 1
        if s.get("ref_logps") is not None:
            ref[i, :c] = torch.tensor(s["ref_logps"])
        if s.get("shaping") is not None:  # potential-based shaping per token (process values)
            token_rewards[i, :c] = torch.tensor(s["shaping"])
        token_rewards[i, c - 1] += float(s.get("reward", 0.0))  # the outcome, on the last token
    out = {
        "input_ids": input_ids, "attention_mask": attention_mask, "pred_pos": pred_pos,
        "prompt_len": prompt_len, "prompt_group": prompt_group,
        "completion_ids": completion_ids, "mask": mask, "ref_logps": ref,
        "rewards": torch.tensor([float(s.get("reward", 0.0)) for s in seqs]), "token_rewards": token_rewards,
    }
    for key in (*ROLLOUT_FIELDS, *token_fields):
        if all(key in s for s in seqs):
            out[key] = torch.zeros((len(seqs), tmax))
            for i, s in enumerate(seqs):
                out[key][i, : len(s[key])] = torch.tensor(s[key], dtype=torch.float32)
    for key in sequence_fields:
        if all(key in s for s in seqs):
            out[key] = torch.tensor([float(s[key]) for s in seqs])
    return {k: v.to(device) for k, v in out.items()} if device is not None else out


def completion_logps(model, batch: dict[str, torch.Tensor], outputs=(), return_hidden: bool = False):
    """``(logps, extra)``: log π(a_h | s_h) for every completion token, ``[B, T]`` (zero where ``mask`` is 0),
    and a dict with the named ``outputs`` (``MODEL_OUTPUTS``, ``[B, T]``) and, with ``return_hidden``, the
    last hidden states ``[B, L, D]`` under ``"hidden"`` (for a value head on the policy's trunk)."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                output_hidden_states=return_hidden)
    logits = out.logits
    idx = batch["pred_pos"].unsqueeze(-1).expand(-1, -1, logits.size(-1))
    logps, extra = logps_from(logits.gather(1, idx), batch, outputs)  # only the rows that predict completion tokens
    if return_hidden:
        extra["hidden"] = out.hidden_states[-1]
    return logps, extra


def logps_from(picked: torch.Tensor, batch: dict[str, torch.Tensor], outputs=()):
    """``(logps, extra)`` from the logits ``[B, T, V]`` that predict each completion token (see ``completion_logps``)."""
    picked = picked.float()
    logps = selective_log_softmax(picked, batch["completion_ids"]) * batch["mask"]
    return logps, {name: MODEL_OUTPUTS[name](picked) * batch["mask"] for name in outputs}
