"""Prompt templates (docs/design.md §3): a chat template for models that have one, a plain template otherwise.

- ``plain``: ``Question: {question}\\nAnswer:`` — for base and from-scratch models; the completion is
  the solution with a leading space. Few-shot demonstrations are prepended as full Q/A pairs.
- ``chat``: the tokenizer's own chat template (``apply_chat_template(..., add_generation_prompt=True)``)
  around one user turn holding the question and the instruction to reason step by step and box the
  answer (the wording of Qwen2.5-Math and DeepSeek-R1's MATH evaluations); few-shot demonstrations
  become earlier user/assistant turns.
- ``auto``: ``chat`` when the bound tokenizer has a chat template, else ``plain``.
"""
from __future__ import annotations

from harness.errors import UserError

STYLES = ("auto", "chat", "plain")
PLAIN_TEMPLATE = "Question: {question}\nAnswer:"
BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def resolve_style(style: str, tokenizer) -> str:
    """``chat`` or ``plain`` for a configured style and a tokenizer (None before one is bound)."""
    if style not in STYLES:
        raise UserError(f"task.prompt_style={style!r}: valid values are {', '.join(STYLES)}")
    has_chat = tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))
    if style == "chat" and tokenizer is not None and not has_chat:
        raise UserError("task.prompt_style=chat, but the model's tokenizer has no chat_template; "
                        "use task.prompt_style=plain (or auto)")
    if style == "auto":
        return "chat" if has_chat else "plain"
    return style


def plain_prompt(question: str, shots: list[tuple[str, str]], template: str = PLAIN_TEMPLATE) -> str:
    """Few-shot Q/A pairs (each followed by a blank line), then the question."""
    demo = "".join(template.format(question=q) + " " + a.strip() + "\n\n" for q, a in shots)
    return demo + template.format(question=question)


def chat_messages(question: str, shots: list[tuple[str, str]], instruction: str) -> list[dict]:
    """Chat turns: each demonstration as a user/assistant pair, then the question with the instruction."""
    def user(q):
        return {"role": "user", "content": f"{q}\n\n{instruction}" if instruction else q}

    msgs = []
    for q, a in shots:
        msgs += [user(q), {"role": "assistant", "content": a.strip()}]
    return msgs + [user(question)]


def chat_prompt(tokenizer, question: str, shots: list[tuple[str, str]], instruction: str) -> str:
    return tokenizer.apply_chat_template(chat_messages(question, shots, instruction), tokenize=False,
                                         add_generation_prompt=True)
