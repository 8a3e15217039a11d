"""DQO's process supervision (harness/pipeline/process_values.py, docs/design.md §4) on hand-made values: step boundaries are
the tokens that end a line, and the potential-based shaping telescopes to a constant per prompt."""
import pytest

from harness.pipeline.process_values import boundaries, shaping
from tests.test_models import small


def test_boundaries_are_the_tokens_that_end_a_step_never_the_last():
    tok, _ = small()
    text = " 12 + 7 = 19\n19 - 3 = 16\n#### 16"
    ids = tok(text)["input_ids"]
    got = boundaries(ids + [tok.eos_token_id], tok)
    assert [tok.decode(ids[: h + 1]).count("\n") for h in got] == [1, 2]  # each boundary closes one more line
    assert all("\n" in tok.decode([ids[h]]) for h in got)
    assert boundaries(tok(" 5\n")["input_ids"], tok) == []  # a newline as the very last token is no boundary


@pytest.mark.parametrize("values, start", [({2: 0.5, 5: 1.0}, 0.25), ({0: 0.0, 3: 0.75, 4: 0.25}, 0.5), ({}, 0.6)])
def test_shaping_telescopes_to_minus_alpha_times_the_start_value(values, start):
    """Σ_h α(Φ(s_{h+1}) − Φ(s_h)) with Φ = 0 after the end is −α·v̂(x) whatever the step values: the same constant
    for every sample of a prompt, so the optimal policy is unchanged (Ng, Harada & Russell 1999)."""
    alpha, n = 0.3, 8
    r = shaping(n, start, values, alpha)
    assert len(r) == n and sum(r) == pytest.approx(-alpha * start)
    phi = start
    for h in range(n - 1):  # each boundary carries the change of potential it makes, every other token nothing
        if h in values:
            assert r[h] == pytest.approx(alpha * (values[h] - phi))
            phi = values[h]
        else:
            assert r[h] == 0.0
    assert r[-1] == pytest.approx(-alpha * phi)


def test_a_step_that_raises_the_chance_of_success_is_rewarded_and_one_that_lowers_it_is_penalised():
    r = shaping(6, 0.5, {1: 0.9, 3: 0.1}, 1.0)
    assert r[1] == pytest.approx(0.4) and r[3] == pytest.approx(-0.8) and r[5] == pytest.approx(-0.1)


def test_only_an_algorithm_that_declares_process_shaping_gets_process_values():
    from algorithms._base import ProcessShaped, process_alpha
    from harness.registry import available, get_algorithm

    declared = [n for n in available("algorithm") if issubclass(get_algorithm(n), ProcessShaped)]
    assert declared == ["dqo"]
    dqo = get_algorithm("dqo")
    assert process_alpha(dqo(process_values=True, process_alpha=0.5)) == 0.5
    assert process_alpha(dqo(process_values=False)) is None and process_alpha(get_algorithm("dpo")()) is None
    assert not hasattr(get_algorithm("dpo")(), "process_alpha")  # the hook is no longer on every algorithm
