"""The text task suite: shipped data = generator output, scorers on hand cases, the tokenizer."""

from __future__ import annotations

import re

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
        f"{t}_{s}.jsonl" for t in TASKS for s in ("train", "test", "ood")
    )
    # Byte for byte: the ood split's generator left the shipped train and test files as they were.
    for path in tmp_path.iterdir():
        assert path.read_bytes() == (generate_data.DATA_DIR / path.name).read_bytes(), path.name


# The shipped train/test files (sha256) as they were before the generalization split existed: adding it
# changed none. Only a deliberate change of the train/test data may update these.
SHIPPED_SHA256 = {
    "arithmetic_test": "086e1948e59043ee3a6d4075bd23e6092ba011e413081bf9a51ef556ed3a226e",
    "arithmetic_train": "5778698af34aa5f9de5ca21d5f63d9730dcc3ab2c7611f75d19eea9ffdaa0c0d",
    "dialogue_test": "87e9682e7ff07435c67d6e06c99fd87e093c206f7fdc192d6726b8d2b464cc49",
    "dialogue_train": "d822d44af44911f2a0100af00af563f828ef216c87e3437463d5a8b002178b4e",
    "format_test": "e4e4c8a210d1951412b087a8c3f02ad0b7245fe99e84a23f41ae7ff84b6a4708",
    "format_train": "7278504669048f5150145a81d4cb520dcdc78e4b7a9ee75552d324d2869aa129",
    "strings_test": "101349782327d49bc317cd0381ba2d9ce5d55d4f0cda2bfd512306de0bfed3ef",
    "strings_train": "4f9ac71fe5584b6ae715d6a55b4d1a777cd877b59af6874a4a4e4ed9fbba41ab",
}


@pytest.mark.parametrize("task", sorted(TASKS))
def test_generalization_split_is_disjoint_from_train_and_test(task):
    import hashlib

    fresh = generate_data.generate(task)
    for split in ("train", "test"):
        shipped = generate_data.DATA_DIR / f"{task}_{split}.jsonl"
        assert generate_data.render(fresh[split]).encode() == shipped.read_bytes(), split
        assert hashlib.sha256(shipped.read_bytes()).hexdigest() == SHIPPED_SHA256[f"{task}_{split}"], split
    train, test, ood = (load_split(task, s) for s in ("train", "test", "ood"))
    assert ood == fresh["ood"] and len(ood) == generate_data.NUM_OOD
    assert len({r["prompt"] for r in ood}) == len(ood)
    # Every word and number of every train/test prompt, template words included.
    seen = {w.lower() for r in train + test for w in re.findall(r"[A-Za-z]+|[0-9]+", r["prompt"])}
    for record in ood:
        items = get_task(task).ood_items(record)
        assert items and all(item in record["prompt"] for item in items)
        assert not {item.lower() for item in items} & seen, record["prompt"]
    # What is new is the word, not the characters: each was seen in the train prompts and responses.
    chars = {"prompt": set(), "response": set()}
    for r in train:
        chars["prompt"] |= set(r["prompt"])
        chars["response"] |= set(r["response"])
    for key, known in chars.items():
        assert set("".join(r[key] for r in ood)) <= known, key
    # Same template and scorer: the demonstrations (flawed ones included) score as they do in train.
    assert sum(get_task(task).score(r, r["response"]) for r in ood) / len(ood) > 0.85
    assert max(len(r["prompt"]) for r in ood) + 1 + 24 <= ModelConfig().max_len


def test_generalization_split_values_by_hand():
    arithmetic = load_split("arithmetic", "ood")
    assert all(100 <= x <= 199 for r in arithmetic for x in r["meta"]["operands"])
    assert all(get_task("arithmetic").score(r, str(r["meta"]["answer"])) == 1.0 for r in arithmetic)
    assert max(r["meta"]["answer"] for r in arithmetic) > 199  # answers no train prompt asks for
    for task in ("strings", "format"):  # train/test words alternate consonants and vowels; these open CC
        for split in ("train", "test"):
            words = [
                r["prompt"].split()[-2] if task == "strings" else r["meta"]["word"]
                for r in load_split(task, split)
            ]
            assert all((w[0] in "aeiou") != (w[1] in "aeiou") for w in words)
        assert all(not set(r["meta"]["word"][:2]) & set("aeiou") for r in load_split(task, "ood"))
    with pytest.raises(ValueError, match="split must be one of"):
        load_split("format", "validation")


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
