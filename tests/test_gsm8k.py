"""The GSM8K task (tasks/gsm8k.py): numeric grading of real-format answers, prompts, solutions."""
import json

import pytest

from harness.errors import UserError
from tasks import get_task
from tests.conftest import SHARED_DATA



@pytest.fixture(scope="module")
def task():
    return get_task("gsm8k")


def ex(final: str) -> dict:
    return {"question": "Natalia sold clips to 48 of her friends...",
            "answer": f"Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### {final}"}


@pytest.mark.parametrize("completion, gold", [
    ("She sold 72 clips.\n#### 72", "72"),
    ("#### 72.", "72"), ("#### $72", "72"), ("#### 72 clips", "72"), ("#### 72.00", "72"),
    ("#### 1,000", "1000"), ("#### 1000", "1,000"), ("#### $1,234,567.50", "1234567.5"),
    ("#### -3", "-3"), ("#### 0.5", "1/2"), ("#### .5", "0.5"), ("#### -.25", "-0.25"),  # a bare decimal
    ("The answer is $\\boxed{72}$.", "72"),
    ("so the answer is 72 dollars.", "72"),
    ("48 + 24 = 72", "72"),                                          # last number
    ("#### 72\nand then I said 5", "72"),                            # #### beats a later number
    ("\\boxed{72} and the answer is 5", "72"),                       # \boxed beats "the answer is"
    ("#### 123456789012345678901234567890", "123456789012345678901234567890"),
])
def test_correct(task, completion, gold):
    assert task.grade(completion, ex(gold)) == 1.0


@pytest.mark.parametrize("completion, gold", [
    ("#### 73", "72"), ("#### 7.2", "72"), ("#### 720", "72"), ("#### -72", "72"),
    ("#### 123456789012345678901234567891", "123456789012345678901234567890"),  # exact for huge integers
    ("#### 71\nbut really 72", "72"),
    ("", "72"), ("I don't know", "72"), ("#### ", "72"), ("\\boxed{", "72"), ("####", "72"),
])
def test_incorrect(task, completion, gold):
    assert task.grade(completion, ex(gold)) == 0.0


def test_gold_answer_and_solution(task):
    e = ex("1,000")
    assert task.gold_answer(e) == "1,000"
    assert "<<" not in task.solution(e) and task.solution(e).startswith(" Natalia")  # plain: leading space
    assert "<<48/2=24>>" in get_task("gsm8k", strip_calculator=False).solution_text(e)
    assert task.grade(e["answer"], e) == 1.0


class ChatTok:
    """A stand-in for a tokenizer with a chat template."""
    chat_template = "{% for m in messages %}...{% endfor %}"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert not tokenize and add_generation_prompt
        return "".join(f"<|{m['role']}|>{m['content']}\n" for m in messages) + "<|assistant|>"


class PlainTok:
    chat_template = None


def test_prompt_styles(tmp_path):
    for split, n in (("train", 5), ("test", 2)):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps({"question": f"Q{i}?", "answer": f"s{i}\n#### {i}"}) + "\n"
                                                         for i in range(n)))
    t = get_task("gsm8k", data_dir=str(tmp_path), n_shot=2)
    e = t.load_splits()["test"][0]
    plain = t.prompt(e)  # no tokenizer bound yet: plain
    assert plain.endswith("Question: Q0?\nAnswer:") and plain.count("Question:") == 3
    t.bind_tokenizer(PlainTok())
    assert t.prompt(e) == plain and t.prompt_record()["style"] == "plain"
    t.bind_tokenizer(ChatTok())
    chat = t.prompt(e)
    assert chat.endswith("<|user|>Q0?\n\nPlease reason step by step, and put your final answer within \\boxed{}.\n<|assistant|>")
    assert chat.count("<|assistant|>") == 3 and not t.solution(e).startswith(" ")
    rec = t.prompt_record()
    assert rec["style"] == "chat" and rec["n_shot"] == 2 and "{question}" in rec["template"] and "\\boxed{}" in rec["instruction"]
    forced = get_task("gsm8k", data_dir=str(tmp_path), prompt_style="plain")
    forced.bind_tokenizer(ChatTok())
    assert forced.prompt(e) == "Question: Q0?\nAnswer:"
    with pytest.raises(UserError, match="no chat_template"):
        get_task("gsm8k", prompt_style="chat").bind_tokenizer(PlainTok())


@pytest.mark.skipif(not (SHARED_DATA / "gsm8k").is_dir(), reason=f"no shared data at {SHARED_DATA}")
def test_every_gold_solution_grades_correct_and_n_plus_one_wrong():
    t = get_task("gsm8k", data_dir=str(SHARED_DATA / "gsm8k"))
    for split in ("train", "test"):
        recs = t.load_splits()[split]
        assert all(t.grade(r["answer"], r) == 1.0 for r in recs)
        assert all(t.grade(t.solution(r), r) == 1.0 for r in recs)  # calculator annotations stripped
        assert not any(t.grade(f"#### {int(t.gold_answer(r).replace(',', '')) + 1}", r) for r in recs)
