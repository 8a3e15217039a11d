import torch

from harness.backbone.models import build_tiny_model, load_model, load_tokenizer, train_tiny_tokenizer
from harness.backbone.sequences import collate, completion_logps
from harness.generation.engines import HFEngine

TEXTS = [f"Question: Ann has {i} pens. She buys {i % 9 + 1} more. How many pens does Ann have now?\n"
         f"Answer: {i} + {i % 9 + 1} = {i + i % 9 + 1}\n#### {i + i % 9 + 1}" for i in range(200)]


def small(tmp_path=None):
    tok = train_tiny_tokenizer(TEXTS, vocab_size=300)
    model = build_tiny_model(tok, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
    return tok, model


def test_tokenizer_round_trip_after_save_and_reload(tmp_path):
    tok, model = small()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    tok2 = load_tokenizer(str(tmp_path))
    probe = TEXTS[:5] + ["Question: 12345 + 0.5 = ?\nAnswer: weird   spacing\t#### -7"]
    for text in probe:
        ids = tok(text)["input_ids"]
        assert tok2(text)["input_ids"] == ids
        assert tok2.decode(ids) == text
    assert (tok2.pad_token, tok2.eos_token) == ("<pad>", "<eos>")
    # digits are single tokens, so numbers are spelled digit by digit
    assert [tok.decode([i]) for i in tok("12345")["input_ids"]] == list("12345")
    model2 = load_model(str(tmp_path))
    x = torch.tensor([tok(TEXTS[0])["input_ids"]])
    assert torch.allclose(model(x).logits, model2(x).logits)


def test_sampler_logprobs_equal_a_training_forward_pass():
    """The bank's reference log-probs come from the sampler; they must be log π_ref of a forward pass."""
    tok, model = small()
    prompts = [t.split("Answer:")[0] + "Answer:" for t in TEXTS[:6]]
    engine = HFEngine(model, tok, batch_size=4)
    out = engine.generate(prompts, n=2, temperature=0.9, max_new_tokens=12, seed=3)
    seqs = [{"prompt_ids": s.prompt_ids, "completion_ids": s.token_ids} for g in out for s in g]
    with torch.no_grad():
        t = collate(seqs, tok.pad_token_id)
        lp, _ = completion_logps(model, t)
    for i, s in enumerate(x for g in out for x in g):
        assert len(s.logprobs) == len(s.token_ids) > 0
        assert torch.allclose(lp[i, : len(s.token_ids)], torch.tensor(s.logprobs), atol=1e-4)


def test_generation_is_seeded_and_greedy_is_deterministic():
    tok, model = small()
    prompts = ["Question: Ann has 3 pens.\nAnswer:", "Question: Ann has 41 pens. She buys 2 more.\nAnswer:"]
    engine = HFEngine(model, tok, batch_size=8)
    a = engine.generate(prompts, n=3, temperature=1.0, max_new_tokens=10, seed=1)
    b = engine.generate(prompts, n=3, temperature=1.0, max_new_tokens=10, seed=1)
    c = engine.generate(prompts, n=3, temperature=1.0, max_new_tokens=10, seed=2)
    ids = lambda out: [s.token_ids for g in out for s in g]  # noqa: E731
    assert ids(a) == ids(b) != ids(c)
    g1 = engine.generate(prompts, n=1, temperature=0.0, max_new_tokens=10, seed=1)
    g2 = engine.generate(prompts, n=1, temperature=0.0, max_new_tokens=10, seed=9)
    assert ids(g1) == ids(g2)
