"""lm-eval as a second evaluator (docs/design.md §8): score a checkpoint with lm-eval's own ``gsm8k`` task
and grade the very same generations with our GSM8K grader, so the two can be compared item by item.

    python -m harness.lm_eval_check --model PATH [--data-dir /path/to/gsm8k] [--limit 200] [--num-fewshot 5]

Without ``--data-dir`` lm-eval reads ``openai/gsm8k`` from the hub (checked in ~3 s first). With it,
lm-eval's task YAML is reused unchanged except for its data source, which becomes the local
``train.jsonl`` (few-shot examples) and ``test.jsonl`` (a ``gsm8k_local`` task in a temporary folder).
Our grade is taken on lm-eval's raw generation (before its filters), so differences are the graders'.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from harness.errors import UserError

TASK = "gsm8k"


def _local_task_dir(data_dir: Path, out: Path) -> str:
    """Write a task YAML that includes lm-eval's gsm8k.yaml with the data source swapped; its name."""
    import lm_eval

    from tasks._loaders import load_local

    load_local(data_dir, ("train", "test"), ("question", "answer"), "gsm8k")  # file:line errors before lm-eval's
    base = Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k.yaml"
    files = {s: str((data_dir / f"{s}.jsonl").resolve()) for s in ("train", "test")}
    (out / "gsm8k_local.yaml").write_text(
        f"include: {base}\ntask: gsm8k_local\ntag: []\ndataset_path: json\ndataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    train: {files['train']}\n    test: {files['test']}\n")
    return "gsm8k_local"


def run(model: str, data_dir: str | None, limit: int | None, num_fewshot: int | None, batch_size: int,
        device: str, max_gen_toks: int) -> dict:
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise UserError("lm-eval is not installed: pip install 'lm-eval==0.4.*'") from None
    from harness.backbone.hub import hub_reachable
    from tasks import get_task

    with tempfile.TemporaryDirectory() as tmp:
        if data_dir:
            name = _local_task_dir(Path(data_dir), Path(tmp))
            manager = TaskManager(include_path=tmp)
        else:
            if not hub_reachable():
                raise UserError("lm-eval gsm8k: cannot reach the Hugging Face hub for openai/gsm8k; "
                                "use --data-dir PATH (a folder with train.jsonl/test.jsonl)")
            name, manager = TASK, TaskManager()
        res = lm_eval.simple_evaluate(
            model="hf", model_args=f"pretrained={model},dtype=float32", tasks=[name], task_manager=manager,
            num_fewshot=num_fewshot, limit=limit, batch_size=batch_size, device=device, log_samples=True,
            gen_kwargs=f"max_gen_toks={max_gen_toks}")
    metrics = res["results"][name]
    grader = get_task("gsm8k")
    items: dict[int, dict] = {}  # lm-eval logs one sample per (document, filter)
    for smp in res["samples"][name]:
        item = items.setdefault(smp["doc_id"], {"text": smp["resps"][0][0]})
        item["ours"] = grader.grade(item["text"], smp["doc"])
        item[smp.get("filter", "none")] = float(smp["exact_match"])
    n = len(items)
    agree = {f: sum(it.get(f) == it["ours"] for it in items.values()) for f in ("strict-match", "flexible-extract")}
    return {"model": model, "task": name, "n": n, "num_fewshot": num_fewshot,
            "lm_eval_strict_match": metrics.get("exact_match,strict-match"),
            "lm_eval_flexible_extract": metrics.get("exact_match,flexible-extract"),
            "ours": sum(it["ours"] for it in items.values()) / max(n, 1),
            "agree_strict": agree["strict-match"], "agree_flexible": agree["flexible-extract"],
            "items": [{"doc_id": d, **it} for d, it in sorted(items.items())]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Score a checkpoint with lm-eval's gsm8k and with our grader.")
    ap.add_argument("--model", required=True, help="HF model id or local checkpoint folder")
    ap.add_argument("--data-dir", help="folder with GSM8K-layout train.jsonl/test.jsonl (default: the hub)")
    ap.add_argument("--limit", type=int, help="first N test items only")
    ap.add_argument("--num-fewshot", type=int, default=None, help="default: lm-eval's (5)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-gen-toks", type=int, default=256)
    ap.add_argument("--out", help="write the summary and per-item rows as JSON here")
    args = ap.parse_args(argv)
    try:
        out = run(args.model, args.data_dir, args.limit, args.num_fewshot, args.batch_size, args.device,
                  args.max_gen_toks)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{out['task']} on {out['n']} items ({out['model']}):\n"
          f"  lm-eval strict-match     {out['lm_eval_strict_match']:.4f}\n"
          f"  lm-eval flexible-extract {out['lm_eval_flexible_extract']:.4f}\n"
          f"  ours (tasks/gsm8k.py)    {out['ours']:.4f}\n"
          f"  items scored the same as ours: strict {out['agree_strict']}/{out['n']}, "
          f"flexible {out['agree_flexible']}/{out['n']}")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
