"""Does the value model know anything? (docs/design.md §3: a value model that learned nothing must show)

Held-out states: ``value_check.n_prompts`` RL prompts that no algorithm trains on (those after the
bank's), and one π_ref sample of each cut at every solution-step boundary. Their Monte-Carlo values
v̂(s) (``k`` π_ref rollouts each: the prompt's are its k samples, the steps' come from
``harness/pipeline/process_values.py``) are a cached artifact shared by every run. After training, V_φ(s) is
read at the same states and compared with v̂: over all states, and over the prompts alone (DRO's
value model predicts V(x) only).

V_φ estimates the *soft* value (docs/design.md §4), which for {0, 1} rewards is a monotone function of the
success probability, not the probability itself; the rank correlation (Spearman) is therefore the
figure to read, with Pearson beside it. This is a diagnostic: its cost is recorded under
``cost.json: diagnostics``, not in the algorithm's data cost.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from harness.config.schema import Bank, ValueCheck

from harness.backbone.sequences import collate
from harness.backbone.value_model import ValueHead
from harness.pipeline.bank import build_bank, load_bank
from harness.pipeline.process_values import build_process_values, load_process_values


def build_value_states(engine, task, examples: list[dict], tok, cfg: ValueCheck, *, out_dir: Path) -> dict:
    """k samples per prompt from π_ref, then MC values at the step boundaries of the first (all saved in
    ``out_dir``)."""
    rollouts = Bank(n_prompts=len(examples), k=cfg.k, temperature=1.0, top_p=1.0, max_new_tokens=cfg.max_new_tokens)
    bank_meta = build_bank(engine, task, examples, rollouts, seed=int(cfg.seed), out_dir=out_dir)
    firsts = [{**g, "samples": g["samples"][:1]} for g in load_bank(out_dir)]
    pv_meta = build_process_values(engine, task, firsts, tok, rollouts, seed=int(cfg.seed), out_dir=out_dir)
    return {"n_prompts": len(examples), "k": int(cfg.k), "n_states": len(examples) + pv_meta["n_prefixes"],
            "gen_tokens": bank_meta["gen_tokens"] + pv_meta["gen_tokens"],
            "prompt_tokens": bank_meta["prompt_tokens"] + pv_meta["prompt_tokens"],
            "n_sequences": bank_meta["n_samples"] + pv_meta["n_prefixes"] * int(cfg.k)}


@torch.no_grad()
def value_correlation(value_model, policy, path: Path, pad_id: int, device=None, batch_size: int = 64) -> dict:
    """Spearman and Pearson correlation of V_φ with v̂ over the held-out states saved at ``path``."""
    bank, mc = load_bank(path), load_process_values(path)
    # states: (sequence index, position in input_ids of the state's last token, v̂, is the prompt)
    seqs, states = [], []
    for g in bank:
        s, n_prompt = g["samples"][0], len(g["prompt_ids"])
        states.append((len(seqs), n_prompt - 1, sum(x["reward"] for x in g["samples"]) / len(g["samples"]), True))
        states += [(len(seqs), n_prompt + h, v, False) for h, v in mc[(g["prompt_id"], s["sample"])].items()]
        seqs.append({"prompt_ids": g["prompt_ids"], "completion_ids": s["completion_ids"]})
    values_at: dict[int, torch.Tensor] = {}
    was = value_model.training, policy.training
    value_model.eval(), policy.eval()
    for i in range(0, len(seqs), batch_size):
        t = collate(seqs[i:i + batch_size], pad_id, device)
        if isinstance(value_model, ValueHead):  # a head on the policy's trunk
            hidden = policy(input_ids=t["input_ids"], attention_mask=t["attention_mask"],
                            output_hidden_states=True).hidden_states[-1]
            v = value_model(hidden)
        else:
            v = value_model(t["input_ids"], t["attention_mask"])
        for row in range(v.size(0)):
            values_at[i + row] = v[row].float().cpu()
    value_model.train(was[0]), policy.train(was[1])
    df = pd.DataFrame({"v": [values_at[j][pos].item() for j, pos, _, _ in states],
                       "mc": [m for _, _, m, _ in states], "prompt": [p for *_, p in states]})
    x = df[df.prompt]
    return {"value_n_states": len(df), "value_corr_spearman": float(df.v.corr(df.mc, method="spearman")),
            "value_corr_pearson": float(df.v.corr(df.mc)),
            "value_corr_prompt_spearman": float(x.v.corr(x.mc, method="spearman"))}
