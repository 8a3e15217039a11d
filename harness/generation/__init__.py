"""Sampling from a policy (docs/design.md §3): engines (HF, vLLM, sharded), per-request sampling noise, the log-prob gap to the trainer, grading many completions at once."""
