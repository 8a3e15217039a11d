"""One optimiser step per algorithm on a fixed batch, in one process or under
``torchrun --nproc_per_node N``; rank 0 saves the updates (``tests/test_distributed.py`` compares them).

    python tests/_distributed_step.py OUT.pt ALGO[:option=value] ...

``STEP_COMPILE=1`` in the environment: the Learner with ``train.compile``.
"""
import copy
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from algorithms._base import TrainData  # noqa: E402
from harness.backbone.training import Learner, make_accelerator  # noqa: E402
from harness.backbone.value_model import ValueModel  # noqa: E402
from harness.distributed.ranks import leave  # noqa: E402
from harness.registry import get_algorithm  # noqa: E402
from tests.test_accumulation import GradientStep, _defaults_for_tests, bank, examples_for, moved  # noqa: E402
from tests.test_models import small  # noqa: E402


def update(spec: str, accelerator) -> dict:
    name, *opts = spec.split(":")
    options = {k: (v == "true") if v in ("true", "false") else v for k, v in (o.split("=") for o in opts)}
    tok, ref = small()
    data = TrainData(bank=bank(tok, ref))
    data.demo = [s for g in data.bank for s in g["samples"] if s["reward"] > 0]
    cls = get_algorithm(name)
    algo = cls(**{**_defaults_for_tests(cls), **options, "lr": 1.0, "value_lr": 1.0}
               if "value_lr" in cls.Options.__dataclass_fields__ else {**_defaults_for_tests(cls), **options, "lr": 1.0})
    batch = examples_for(algo, tok, ref, data)[:8]
    model = moved(ref, data, tok.pad_token_id)
    value_model = ValueModel(copy.deepcopy(model)) if algo.needs_value_model else None
    if value_model is not None:
        torch.manual_seed(3)
        value_model.head.linear.weight.data.normal_(0, 0.1)
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"warmup_ratio": 0.0, "lr_schedule": "constant", "max_grad_norm": 0.0, "weight_decay": 0.0,
                            "micro_batch_size": 2, "compile": os.environ.get("STEP_COMPILE") == "1"})
    learner = Learner(model, algo, cfg, steps=1, seed=0, pad_id=tok.pad_token_id, accelerator=accelerator,
                      value_model=value_model)
    rec = learner.step(batch, 1)
    state = accelerator.get_state_dict(learner.model)  # gathered, when the weights are sharded (ZeRO-3)
    flat = lambda prefix: torch.cat([v.detach().float().flatten() for k, v in state.items()  # noqa: E731
                                     if k.startswith(prefix)]) if accelerator.is_main_process else None
    return {"policy": flat("policy."), "value": None if value_model is None else flat("value."), "loss": rec["loss"]}


def main(out: str, specs: list[str]) -> None:
    accelerator = make_accelerator("fp32")
    torch.optim.AdamW = GradientStep
    results = {spec: update(spec, accelerator) for spec in specs}
    if accelerator.is_main_process:
        torch.save({"world": accelerator.num_processes, **results}, out)
    leave(0)  # as a job's process ends (harness.distributed.ranks.leave)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
