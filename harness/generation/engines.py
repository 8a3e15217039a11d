"""Generation engines (docs/design.md §3): prompts in; texts, token ids and per-token log-probs out.

Every engine returns the log-probability of each sampled token under the *untempered* policy
(log π(a|s)), so a bank sampled at T=1 carries exact reference log-probs and needs no second pass.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessorList

from harness.distributed import ranks
from harness.generation.sampling import GumbelSampler, request_keys


@dataclass
class Sample:
    text: str
    token_ids: list[int]
    logprobs: list[float]
    finished: bool  # ended with EOS rather than at max_new_tokens
    prompt_ids: list[int] = field(default_factory=list)


class Engine(abc.ABC):
    """One interface for every backend; ``generate`` returns ``n`` samples for each prompt (a string, or a
    list of token ids to continue exactly). ``keys`` name the prompts for the sampling noise (their index in
    the list by default): a sample depends on (seed, key, sample index) only, so a shard of the prompts,
    given its keys, draws what the whole list draws (``harness/generation/sampling.py``)."""

    #: the log-probs come from the trainer's own model and numerics, so they can serve as log π_old
    exact_logprobs: bool = True

    @abc.abstractmethod
    def load_weights(self, model) -> None:
        """Sample from ``model``'s current weights from now on (online algorithms, after each update)."""

    @abc.abstractmethod
    def generate(self, prompts: list[str], *, n: int = 1, temperature: float = 1.0, top_p: float = 1.0,
                 max_new_tokens: int = 64, seed: int = 0, desc: str = "generate",
                 keys: list[int] | None = None) -> list[list[Sample]]:
        ...


class HFEngine(Engine):
    """transformers ``generate`` with KV cache, left-padded batches, CPU or GPU.

    ``temperature=0`` is greedy; otherwise greedy decoding over logits plus per-request Gumbel noise
    (``harness/generation/sampling.py``), so the batch a request lands in never changes what it draws. Raw logits of
    every step are kept for the log-probs, so memory grows as batch x steps x vocab: lower
    ``generation.batch_size`` for large-vocabulary models.
    """

    def __init__(self, model, tokenizer, *, batch_size: int = 256, exact_logprobs: bool = True, synced: bool = False):
        self.model, self.tok, self.batch_size = model, tokenizer, batch_size
        # False when the trainer autocasts (bf16/fp16) while generate runs in the weights' dtype
        self.exact_logprobs = exact_logprobs
        # weights sharded over processes (FSDP): every process runs each decoding step until all are done
        self.synced = synced

    def load_weights(self, model) -> None:
        self.model = model  # the same module the trainer updates: nothing to copy

    @torch.no_grad()
    def generate(self, prompts, *, n=1, temperature=1.0, top_p=1.0, max_new_tokens=64, seed=0, desc="generate",
                 keys=None):
        model, tok = self.model, self.tok
        if not prompts:  # an empty request is an empty result
            return []
        keys = list(range(len(prompts))) if keys is None else list(keys)
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        eos_ids = _eos_ids(model, tok)
        # Prompts are strings, or token ids (to continue a sampled prefix exactly, without re-tokenising).
        enc = [list(p) for p in prompts] if not isinstance(prompts[0], str) else \
            tok(prompts, add_special_tokens=True)["input_ids"]
        # Requests are (prompt, sample) pairs, longest prompts first so batches pad little.
        requests = [(i, j) for i in range(len(prompts)) for j in range(n)]
        requests.sort(key=lambda r: -len(enc[r[0]]))
        out: list[list[Sample | None]] = [[None] * n for _ in prompts]
        greedy = temperature == 0
        bar = tqdm(total=len(requests), desc=desc, unit="seq", leave=False, disable=None)
        for start in range(0, len(requests), self.batch_size):
            chunk = requests[start:start + self.batch_size]
            ids = [enc[i] for i, _ in chunk]
            width = max(map(len, ids))
            input_ids = torch.tensor([[tok.pad_token_id] * (width - len(x)) + x for x in ids], device=device)
            attn = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)
            sampler = [] if greedy else [GumbelSampler(
                request_keys(seed, [keys[i] for i, _ in chunk], [j for _, j in chunk]), width, temperature, top_p)]
            gen = model.generate(
                input_ids=input_ids, attention_mask=attn, max_new_tokens=max_new_tokens, do_sample=False,
                temperature=None, top_p=None, top_k=None, logits_processor=LogitsProcessorList(sampler),
                pad_token_id=tok.pad_token_id, eos_token_id=eos_ids, synced_gpus=self.synced,
                output_logits=True, return_dict_in_generate=True,
            )
            new = gen.sequences[:, width:]
            logits = torch.stack(gen.logits, dim=1).float()  # [B, steps, V], raw (untempered)
            lp = torch.log_softmax(logits, dim=-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
            for row, (i, j) in enumerate(chunk):
                toks = new[row].tolist()
                stop = next((k for k, t in enumerate(toks) if t in eos_ids), None)
                keep = len(toks) if stop is None else stop + 1
                toks = toks[:keep]
                out[i][j] = Sample(
                    text=tok.decode(toks, skip_special_tokens=True),
                    token_ids=toks,
                    logprobs=lp[row, :keep].tolist(),
                    finished=stop is not None,
                    prompt_ids=enc[i],
                )
            bar.update(len(chunk))
        bar.close()
        model.train(was_training)
        return out  # type: ignore[return-value]


def _eos_ids(model, tok) -> list[int]:
    ids = model.generation_config.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tok.eos_token_id is not None and tok.eos_token_id not in ids:
        ids.append(tok.eos_token_id)
    return ids


class VLLMEngine(Engine):
    """vLLM on one GPU, colocated with the trainer (as TRL's ``vllm_mode="colocate"``): batched sampling with
    ``n`` per prompt and the sampled tokens' log-probs; ``load_weights`` pushes the policy's current weights
    into the engine after each update. Log-probs are vLLM's raw (untempered) ones, but its kernels and
    bf16 differ from the trainer's numerics, so online algorithms recompute log π_old with the trainer
    (``exact_logprobs = False``)."""

    exact_logprobs = False

    def __init__(self, model_path: str, tokenizer, *, gpu_memory_utilization: float = 0.3, seed: int = 0,
                 max_model_len: int | None = None):
        check_engine("vllm")
        import os

        from vllm import LLM

        # colocated in this process: vLLM's external launcher reads the torch.distributed variables
        for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "localhost"),
                           ("MASTER_PORT", "29517")):
            os.environ.setdefault(key, value)
        self.tok = tokenizer
        self.llm = LLM(model=str(model_path), gpu_memory_utilization=gpu_memory_utilization, seed=seed,
                       max_model_len=max_model_len, distributed_executor_backend="external_launcher",
                       logprobs_mode="raw_logprobs", enable_prefix_caching=True)

    def load_weights(self, model) -> None:
        runner = self.llm.llm_engine.model_executor.driver_worker.model_runner.model
        runner.load_weights((name, p.detach()) for name, p in model.state_dict().items())
        self.llm.reset_prefix_cache()  # cached prefixes hold the old weights' keys and values

    def generate(self, prompts, *, n=1, temperature=1.0, top_p=1.0, max_new_tokens=64, seed=0, desc="generate",
                 keys=None):
        from vllm import SamplingParams

        if not prompts:  # an empty request is an empty result
            return []
        enc = [list(p) for p in prompts] if not isinstance(prompts[0], str) else \
            self.tok(prompts, add_special_tokens=True)["input_ids"]
        keys = list(range(len(prompts))) if keys is None else list(keys)
        greedy = temperature == 0
        # a seed per prompt (vLLM's per-request generator): a prompt draws the same n samples in any batch
        seeds = request_keys(seed, keys, [0] * len(keys)).tolist()
        params = [SamplingParams(n=n, temperature=0.0 if greedy else temperature, top_p=1.0 if greedy else top_p,
                                 max_tokens=max_new_tokens, logprobs=0, seed=s & 0x7FFFFFFF) for s in seeds]
        outs = self.llm.generate([{"prompt_token_ids": ids} for ids in enc], params, use_tqdm=False)
        result = []
        for ids, o in zip(enc, outs):
            group = []
            for c in o.outputs:
                toks = list(c.token_ids)
                group.append(Sample(text=self.tok.decode(toks, skip_special_tokens=True), token_ids=toks,
                                    logprobs=[lp[t].logprob for lp, t in zip(c.logprobs, toks)],
                                    finished=c.finish_reason == "stop", prompt_ids=ids))
            result.append(group)
        return result


def check_engine(name: str) -> None:
    """One line, before any work, when the engine cannot run here."""
    import importlib.util

    from harness.errors import UserError

    if name not in ("hf", "vllm"):
        raise UserError(f"unknown generation.engine {name!r}; valid: hf, vllm")
    if name == "vllm" and not torch.cuda.is_available():
        raise UserError("generation.engine=vllm needs an NVIDIA GPU and none is visible; use generation.engine=hf")
    if name == "vllm" and importlib.util.find_spec("vllm") is None:
        raise UserError("generation.engine=vllm needs vLLM: pip install -e '.[gpu]' (or use generation.engine=hf)")


def make_engine(name: str, model, tokenizer, *, batch_size: int = 256, model_path: str | None = None,
                gpu_memory_utilization: float = 0.3, exact_logprobs: bool = True, synced: bool = False) -> Engine:
    """``hf`` samples from ``model`` itself (its log-probs are the trainer's when ``exact_logprobs``: no
    autocast); ``vllm`` loads ``model_path`` (π_ref) into its own engine."""
    check_engine(name)
    if name == "hf":
        return HFEngine(model, tokenizer, batch_size=batch_size, exact_logprobs=exact_logprobs, synced=synced)
    return VLLMEngine(model_path or model.name_or_path, tokenizer, gpu_memory_utilization=gpu_memory_utilization)


class ShardedEngine(Engine):
    """An engine whose ``generate`` is split over the job's processes and gathered back in order."""

    def __init__(self, inner: Engine):
        self.inner = inner
        self.exact_logprobs = inner.exact_logprobs

    def load_weights(self, model) -> None:
        self.inner.load_weights(model)

    def generate(self, prompts, *, n=1, temperature=1.0, top_p=1.0, max_new_tokens=64, seed=0, desc="generate",
                 keys=None):
        keys = list(range(len(prompts))) if keys is None else list(keys)
        world, r = ranks.world_size(), ranks.rank()
        mine = ranks.shard(len(prompts), world, r)
        out = self.inner.generate([prompts[i] for i in mine], n=n, temperature=temperature, top_p=top_p,
                                  max_new_tokens=max_new_tokens, seed=seed, desc=desc, keys=[keys[i] for i in mine])
        result = [None] * len(prompts)
        for r_, (idx, groups) in enumerate(ranks.gather((mine, out))):
            for i, g in zip(idx, groups):
                result[i] = g
        return result
