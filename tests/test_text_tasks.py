"""The text task suite: shipped data = generator output, scorers on hand cases, the tokenizer."""

from __future__ import annotations

import pytest
import torch

from rlarena.envs.text import generate_data
from rlarena.envs.text.model import ModelConfig
from rlarena.envs.text.tasks import TASKS, get_task, load_split
from rlarena.envs.text.tokenizer import BOS, EOS, PAD, CharTokenizer


def test_shipped_data_is_the_generators_output(tmp_path):
    assert generate_data.main(["--check"]) == 0, "run `python -m rlarena.envs.text.generate_data`"
    assert generate_data.main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{t}_{s}.jsonl" for t in TASKS for s in ("train", "test")
    )


@pytest.mark.parametrize("task", sorted(TASKS))
def test_splits_are_disjoint_and_demonstrations_score_well(task):
    train, test = load_split(task, "train"), load_split(task, "test")
    assert len(train) == generate_data.NUM_TRAIN and len(test) == generate_data.NUM_TEST
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}
    scores = [get_task(task).score(r, r["response"]) for r in train]
    assert all(0.0 <= s <= 1.0 for s in scores)
    # Demonstrations are good, and (format, dialogue) imperfect by design: RL has something to fix.
    assert sum(scores) / len(scores) > 0.85
    # BOS + prompt + the longest response the env generates (24 tokens) fit the LM's context (192).
    assert max(len(r["prompt"]) for r in train + test) + 1 + 24 <= ModelConfig().max_len


def test_scorers_on_hand_cases():
    arith = {"meta": {"answer": 42}}
    score = get_task("arithmetic").score
    assert score(arith, "42") == 1.0 and score(arith, " 42 ") == 1.0
    assert (
        score(arith, "40") == pytest.approx(0.4)
        and score(arith, "99") == 0.0
        and score(arith, "forty") == 0.0
    )

    strings = {"meta": {"target": "olleh"}}
    score = get_task("strings").score
    assert score(strings, "olleh") == 1.0 and score(strings, "ollex") == pytest.approx(0.8)
    assert score(strings, "olleh!") == pytest.approx(5 / 6) and score(strings, "") == 0.0

    fmt = {"meta": {"word": "dog", "n": 3, "case": "uppercase", "sep": "-"}}
    score = get_task("format").score
    assert score(fmt, "DOG-DOG-DOG") == 1.0
    assert score(fmt, "DOG-DOG-DOG-DOG") == pytest.approx(2 / 3)  # one too many: count fails
    assert score(fmt, "dog-dog-dog") == pytest.approx(2 / 3)  # wrong case
    assert score(fmt, "DOG,DOG,DOG") == pytest.approx((0 + 0 + 1 / 3) / 3)  # wrong separator: one odd item

    chat = {"meta": {"asked": "pet", "value": "cat", "others": ["Oslo"], "target": "Your pet is cat."}}
    score = get_task("dialogue").score
    assert score(chat, "Your pet is cat.") == 1.0
    assert score(chat, "It is cat.") == 0.75
    assert score(chat, "Your pet is cat, I remember!") == 0.75
    assert score(chat, "Your pet is dog.") == 0.5
    assert score(chat, "Your pet is cat in Oslo.") == 0.75


def test_tokenizer_round_trip_and_left_padding():
    tok = CharTokenizer()
    text = "User: What is my pet?\nBot: Your pet is cat."
    assert tok.decode(tok.encode(text, bos=True, eos=True)) == text
    assert tok.decode(tok.encode("ab", eos=True) + tok.encode("cd")) == "ab"  # stops at EOS
    assert tok.decode(tok.encode("é")) == "?"  # outside the vocabulary
    ids, mask = tok.encode_prompts(["ab", "abcd"])
    assert ids.tolist() == [[PAD, PAD, BOS, *tok.encode("ab")], [BOS, *tok.encode("abcd")]]
    assert torch.equal(mask, ids != PAD)
    assert tok.vocab_size == 3 + len(tok.chars) and EOS not in tok.itos


def test_scorer_parts_make_the_score_and_pick_pairs_that_differ_in_one_part():
    import torch

    from rlarena.envs.text.reward_model import Comparisons
    from rlarena.envs.text.tasks import get_task, load_split

    task = get_task("format")
    record = load_split("format", "test")[0]
    m = record["meta"]
    right = m["sep"].join(
        [
            {"uppercase": str.upper, "lowercase": str.lower, "capitalized": str.capitalize}[m["case"]](
                m["word"]
            )
        ]
        * m["n"]
    )
    one_too_many = right + m["sep"] + right.split(m["sep"])[0]
    wrong_word = right.replace(right.split(m["sep"])[0], "x" * len(m["word"]))
    responses = [right, one_too_many, wrong_word]
    parts = [task.components(record, r) for r in responses]
    for response, part in zip(responses, parts):
        assert task.score(record, response) == pytest.approx(sum(part.values()) / 3)
    assert parts[0] == {"count": 1.0, "word": 1.0, "case": 1.0} and parts[1]["count"] == 0.0
    data = Comparisons(
        *(torch.zeros(1),) * 5,
        winner=torch.tensor([0, 0]),
        loser=torch.tensor([1, 2]),
        components={k: torch.tensor([p[k] for p in parts]) for k in parts[0]},
    )
    assert data.differing_in_only("count").tolist() == [0]  # the extra item changes the count only
    assert data.differing_in_only("word").tolist() == []  # a wrong word also breaks the case check
