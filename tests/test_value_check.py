"""The value check reads V_φ at exactly the held-out state whose Monte-Carlo value it is compared with."""
import json

import torch
from datasets import Dataset

from harness.pipeline.value_check import value_correlation


class TokenValue(torch.nn.Module):
    """V(position) = the token id at that position: a value model whose right answer we know."""

    def forward(self, input_ids, attention_mask):
        return input_ids.float() * attention_mask


def test_value_read_at_the_state_after_the_boundary_token(tmp_path):
    rows, mc = [], []
    # The prompt's state is its last token; its v̂ is the mean reward of its samples (here 0 and 1).
    for i, (prompt, completion) in enumerate([([7, 2, 0], [10, 11, 12, 13]), ([4, 1], [20, 21, 22, 23, 24])]):
        rows.append({"prompt_id": f"p{i}", "sample": 0, "prompt_ids": prompt, "completion_ids": completion,
                     "reward": float(prompt[-1])})
        # v̂ after completion token h := that token's id, so only the right alignment correlates perfectly.
        mc.append({"prompt_id": f"p{i}", "sample": 0, "values": {str(h): completion[h] for h in (0, 2)}})
    Dataset.from_list(rows).to_parquet(str(tmp_path / "bank.parquet"))
    (tmp_path / "process_values.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mc))
    out = value_correlation(TokenValue(), torch.nn.Identity(), tmp_path, pad_id=0)
    assert out["value_n_states"] == 6
    assert abs(out["value_corr_pearson"] - 1) < 1e-9 and abs(out["value_corr_spearman"] - 1) < 1e-9
    assert abs(out["value_corr_prompt_spearman"] - 1) < 1e-9
