"""A checkpointed run under ``torchrun --nproc_per_node N``: ``full`` trains 4 steps; ``killed`` dies during
step 3 (after the checkpoint at step 2); ``resume`` continues from that checkpoint. Rank 0 saves the final
weights (``tests/test_distributed.py`` compares them).

    python tests/_distributed_resume.py OUT.pt CKPT_DIR full|killed|resume
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from algorithms.sft import SFT  # noqa: E402
from harness.backbone.training import make_accelerator, train  # noqa: E402
from harness.distributed.ranks import leave  # noqa: E402
from tests.test_models import small  # noqa: E402
from tests.test_training import cfg, examples  # noqa: E402


class DiesAtStep3(SFT):
    calls = 0

    def loss(self, batch, stats):
        DiesAtStep3.calls += 1
        if DiesAtStep3.calls == 3:  # one micro-batch a step: the third call is step 3
            raise KeyboardInterrupt
        return super().loss(batch, stats)


def main(out: str, ckpt: str, mode: str) -> None:
    tok, model = small()
    c = cfg(steps=4, batch_size=4, micro_batch_size=4, checkpoint_every=2, lr_schedule="cosine", warmup_ratio=0.25)
    accelerator = make_accelerator("fp32")
    algo = DiesAtStep3(lr=1e-2) if mode == "killed" else SFT(lr=1e-2)
    try:
        res = train(model, algo, examples(tok), c, seed=0, pad_id=tok.pad_token_id, accelerator=accelerator,
                    ckpt_dir=None if mode == "full" else Path(ckpt))
    except KeyboardInterrupt:
        leave(0)
    if accelerator.is_main_process:
        torch.save({"steps": res["steps"], "params": torch.cat([p.detach().flatten() for p in res["model"].parameters()])},
                   out)
    leave(0)  # as a job's process ends (harness.distributed.ranks.leave)


if __name__ == "__main__":
    main(*sys.argv[1:4])
