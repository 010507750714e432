"""The task suite: prompt makers (used by ``generate_data.py``), demonstrations and programmatic scorers.

A task record is ``{"prompt": str, "response": str, "meta": {...}}``: ``response`` is the demonstration
(Step 0 of InstructGPT), ``meta`` holds what the scorer needs. Like human demonstrators, the simulated ones
are imperfect: a share of the ``format`` and ``dialogue`` demonstrations is off-style (one item too many; a
chatty or indirect answer), so the SFT model imitates flaws the scorer penalizes and RL has something to
fix, as in InstructGPT, where the RL policy beats the SFT one. A scorer maps (record, response) to a score
in [0, 1]; it is the "true" reward (evaluation, ``env.reward=oracle``) and the synthetic labeler that ranks
responses for the reward model. Scorers give partial credit so that the RL signal is not all-or-nothing.

Each task also has a generalization split (``ood``, ``make_<task>_ood``): the same template and scorer, but
words or values drawn from a pool disjoint from everything a train or test prompt can contain, so no SFT or
reward-model training prompt ever showed them (``Task.ood_items`` names them in a record's ``meta``):

* ``arithmetic``: operands 100-199 (train/test: 0-99), so the sums (200-398) are new answers too.
* ``strings``, ``format``: made-up words of the same letters and lengths that open with two consonants
  (:func:`cluster_word`); train/test words strictly alternate consonants and vowels (:func:`pseudo_word`),
  so none can be one. The templates' own words that fit the pattern ("the", "plus") are redrawn.
* ``dialogue``: names, colors, pets and cities from lists of their own (``_OOD_FACTS``), none of them a
  train/test value or a word of the dialogue templates.

What is new is the word, not the symbols: every character of an ``ood`` prompt occurs in the train prompts
(a letter never seen in training has an untrained embedding: every model would fail it alike, and the split
would rank nothing). tests/test_text_tasks.py checks both.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from rlarena.registry import UnknownPluginError

DATA_DIR = Path(__file__).resolve().parent / "data"
Record = dict[str, Any]

# Shares of off-style demonstrations (see the module docs).
FORMAT_FLAWED = 0.25
DIALOGUE_FLAWED = 0.4

_CONSONANTS = "bcdfghklmnprstvz"
_VOWELS = "aeiou"
_WORDS = re.compile(r"[A-Za-z]+|[0-9]+")


def pseudo_word(rng: random.Random, min_len: int, max_len: int) -> str:
    """A pronounceable made-up word (consonant/vowel alternation), so no word list needs shipping."""
    n = rng.randint(min_len, max_len)
    start = rng.random() < 0.5
    return "".join(rng.choice(_CONSONANTS if (i % 2 == 0) == start else _VOWELS) for i in range(n))


def cluster_word(rng: random.Random, min_len: int, max_len: int, reserved: frozenset[str]) -> str:
    """A made-up word of :func:`pseudo_word`'s letters that opens with two consonants, then alternates.

    ``pseudo_word`` strictly alternates, so it can never make one: the generalization split's words.
    ``reserved`` words (a template's own, e.g. "the") are redrawn.
    """
    while True:
        n = rng.randint(min_len, max_len)
        word = "".join(rng.choice(_VOWELS if i > 0 and i % 2 == 0 else _CONSONANTS) for i in range(n))
        if word not in reserved:
            return word


def prompt_words(text: str) -> set[str]:
    """The words and numbers of a text, lowercased: what the generalization split keeps new."""
    return {w.lower() for w in _WORDS.findall(text)}


def similarity(a: str, b: str) -> float:
    """Fraction of positions where two strings agree, over the longer length (1 = identical)."""
    if not a and not b:
        return 1.0
    return sum(x == y for x, y in zip(a, b)) / max(len(a), len(b))


# ---- arithmetic question answering --------------------------------------------------------------------


ARITHMETIC_OPERANDS = (0, 99)  # train/test
ARITHMETIC_OOD_OPERANDS = (100, 199)  # the generalization split: no train/test prompt has these numbers


def _arithmetic_record(rng: random.Random, low: int, high: int, operands: bool = False) -> Record:
    a, b = rng.randint(low, high), rng.randint(low, high)
    op = rng.choice("+-")
    if op == "-" and b > a:  # keep answers non-negative
        a, b = b, a
    answer = a + b if op == "+" else a - b
    meta: dict[str, Any] = {"answer": answer}
    if operands:  # only in the ood split: the shipped train/test records stay as they are
        meta["operands"] = [a, b]
    return {"prompt": f"Q: What is {a}{op}{b}?\nA: ", "response": str(answer), "meta": meta}


def make_arithmetic(rng: random.Random) -> Record:
    return _arithmetic_record(rng, *ARITHMETIC_OPERANDS)


def make_arithmetic_ood(rng: random.Random) -> Record:
    return _arithmetic_record(rng, *ARITHMETIC_OOD_OPERANDS, operands=True)


def score_arithmetic(record: Record, response: str) -> float:
    """1 for the exact answer; a number within 10 of it earns up to 0.5; anything else 0."""
    answer = record["meta"]["answer"]
    text = response.strip()
    if not text.isdigit():
        return 0.0
    error = abs(int(text) - answer)
    return 1.0 if error == 0 else 0.5 * max(0.0, 1.0 - error / 10)


# ---- string transformation: reverse or sort a word ----------------------------------------------------


_STRINGS_VERBS = {"reverse": "Reverse", "sort": "Sort the letters of"}
_STRINGS_RESERVED = frozenset(prompt_words(" ".join(_STRINGS_VERBS.values())))


def _strings_record(rng: random.Random, word: str) -> Record:
    op = rng.choice(["reverse", "sort"])
    target = word[::-1] if op == "reverse" else "".join(sorted(word))
    return {"prompt": f"{_STRINGS_VERBS[op]}: {word}\n> ", "response": target, "meta": {"target": target}}


def make_strings(rng: random.Random) -> Record:
    return _strings_record(rng, pseudo_word(rng, 3, 7))


def make_strings_ood(rng: random.Random) -> Record:
    word = cluster_word(rng, 3, 7, _STRINGS_RESERVED)
    record = _strings_record(rng, word)
    record["meta"]["word"] = word  # only in the ood split (train/test records stay as they are)
    return record


def score_strings(record: Record, response: str) -> float:
    """Positional character agreement with the target (1 = exact)."""
    return similarity(response.strip(), record["meta"]["target"])


# ---- follow-the-format instruction --------------------------------------------------------------------

_CASES = {"uppercase": str.upper, "lowercase": str.lower, "capitalized": str.capitalize}
_SEPS = {"commas": ",", "dashes": "-", "semicolons": ";", "slashes": "/", "plus signs": "+"}


_FORMAT_PROMPT = "Write {word} {n} times in {case}, separated by {sep_name}.\n> "
_FORMAT_RESERVED = frozenset(
    prompt_words(_FORMAT_PROMPT.format(word="", n="", case=" ".join(_CASES), sep_name=" ".join(_SEPS)))
)


def _format_record(rng: random.Random, word: str) -> Record:
    n = rng.randint(2, 4)
    case = rng.choice(sorted(_CASES))
    sep_name = rng.choice(sorted(_SEPS))
    sep = _SEPS[sep_name]
    # A quarter of the demonstrations miscount: one item too many.
    demo = sep.join([_CASES[case](word)] * (n + (rng.random() < FORMAT_FLAWED)))
    prompt = _FORMAT_PROMPT.format(word=word, n=n, case=case, sep_name=sep_name)
    return {"prompt": prompt, "response": demo, "meta": {"word": word, "n": n, "case": case, "sep": sep}}


def make_format(rng: random.Random) -> Record:
    return _format_record(rng, pseudo_word(rng, 3, 4))


def make_format_ood(rng: random.Random) -> Record:
    return _format_record(rng, cluster_word(rng, 3, 4, _FORMAT_RESERVED))


def format_components(record: Record, response: str) -> dict[str, float]:
    """Three checks: the item count (split on the asked separator), the word, and the letter case."""
    m = record["meta"]
    items = response.strip().split(m["sep"])
    case_fn = _CASES[m["case"]]
    return {
        "count": float(len(items) == m["n"]),
        "word": sum(item.lower() == m["word"] for item in items) / max(len(items), m["n"]),
        "case": sum(bool(item) and item == case_fn(item) for item in items) / max(len(items), m["n"]),
    }


def score_format(record: Record, response: str) -> float:
    """Mean of the three checks of :func:`format_components`."""
    c = format_components(record, response)
    return (c["count"] + c["word"] + c["case"]) / 3


# ---- multi-turn dialogue: remember what the user said ------------------------------------------------

_FACTS = {
    "name": [
        "Ana",
        "Ben",
        "Cleo",
        "Dev",
        "Eva",
        "Finn",
        "Gus",
        "Hana",
        "Ivo",
        "Jun",
        "Kai",
        "Lea",
        "Max",
        "Noa",
    ],
    "color": ["red", "blue", "green", "pink", "gray", "gold", "teal", "black", "white"],
    "pet": ["cat", "dog", "fish", "bird", "frog", "hamster", "rabbit", "snake"],
    "city": ["Oslo", "Rome", "Lima", "Kyiv", "Pune", "Nice", "Cork", "Bonn", "Doha"],
}
# The generalization split's values: none is a train/test value or a word of the templates below, and each
# is spelt with letters the train dialogues use (no j, q, z; capitals A-P, R), so only the word is new.
_OOD_FACTS = {
    "name": [
        "Omar",
        "Pia",
        "Rosa",
        "Leo",
        "Nia",
        "Ravi",
        "Bea",
        "Carl",
        "Dina",
        "Elio",
        "Fay",
        "Gil",
        "Ida",
        "Mira",
    ],
    "color": ["orange", "purple", "brown", "cyan", "navy", "olive", "lime", "beige", "maroon"],
    "pet": ["parrot", "turtle", "mouse", "gecko", "pony", "goat", "duck", "ferret"],
    "city": ["Paris", "Cairo", "Riga", "Baku", "Accra", "Bern", "Perth", "Lyon", "Porto"],
}
_STATEMENTS = {
    "name": "I am {v}.",
    "color": "My color is {v}.",
    "pet": "I have a {v}.",
    "city": "I live in {v}.",
}
_ACKS = {"name": "Hi {v}!", "color": "Nice, {v}.", "pet": "A {v}, cute!", "city": "{v} is lovely."}


def _dialogue_record(rng: random.Random, facts: dict[str, list[str]]) -> Record:
    attrs = rng.sample(sorted(facts), 2)
    values = {a: rng.choice(facts[a]) for a in attrs}
    turns = []
    for a in attrs:
        turns.append(f"User: {_STATEMENTS[a].format(v=values[a])}")
        turns.append(f"Bot: {_ACKS[a].format(v=values[a])}")
    asked = rng.choice(attrs)
    turns.append(f"User: What is my {asked}?")
    prompt = "\n".join(turns) + "\nBot: "
    target = f"Your {asked} is {values[asked]}."
    flaw = rng.random()
    if flaw < DIALOGUE_FLAWED / 2:  # indirect: loses the "Your <attr> is" form
        demo = f"It is {values[asked]}."
    elif flaw < DIALOGUE_FLAWED:  # chatty: too long
        demo = f"Your {asked} is {values[asked]}, I remember!"
    else:
        demo = target
    others = [values[a] for a in attrs if a != asked]
    meta = {"asked": asked, "value": values[asked], "others": others, "target": target}
    return {"prompt": prompt, "response": demo, "meta": meta}


def make_dialogue(rng: random.Random) -> Record:
    """A short conversation: the user states two facts over two turns, then asks for one of them."""
    return _dialogue_record(rng, _FACTS)


def make_dialogue_ood(rng: random.Random) -> Record:
    return _dialogue_record(rng, _OOD_FACTS)


def dialogue_components(record: Record, response: str) -> dict[str, float]:
    """Recalling the asked value (fact), the "Your <attr> is" form, brevity without the other fact."""
    m = record["meta"]
    text = response.strip()
    words = re.findall(r"[A-Za-z]+", text)
    return {
        "fact": float(m["value"] in words),
        "form": float(text.startswith(f"Your {m['asked']} is ")),
        "brevity": float(all(o not in words for o in m["others"]) and len(text) <= len(m["target"]) + 4),
    }


def score_dialogue(record: Record, response: str) -> float:
    """Half for the fact, a quarter each for the form and brevity (:func:`dialogue_components`)."""
    c = dialogue_components(record, response)
    return 0.5 * c["fact"] + 0.25 * c["form"] + 0.25 * c["brevity"]


# ---- the suite ----------------------------------------------------------------------------------------


def _arithmetic_items(record: Record) -> list[str]:
    return [str(x) for x in record["meta"]["operands"]]


def _word_item(record: Record) -> list[str]:
    return [record["meta"]["word"]]


def _dialogue_items(record: Record) -> list[str]:
    return [record["meta"]["value"], *record["meta"]["others"]]  # both facts the prompt states


@dataclass(frozen=True)
class Task:
    name: str
    make: Callable[[random.Random], Record]
    score: Callable[[Record, str], float]
    description: str
    # The generalization split's prompt maker (same template and scorer, a disjoint pool of words/values)
    # and the words/values of one of its records, from its meta: none occurs in a train or test prompt.
    make_ood: Callable[[random.Random], Record]
    ood_items: Callable[[Record], list[str]]
    # The scorer's parts, where it has several (a reward model's accuracy is reported per part: which of
    # them it learned). None: the score is one check.
    components: Callable[[Record, str], dict[str, float]] | None = None


TASKS: dict[str, Task] = {
    "arithmetic": Task(
        "arithmetic",
        make_arithmetic,
        score_arithmetic,
        "two-number addition/subtraction QA",
        make_ood=make_arithmetic_ood,
        ood_items=_arithmetic_items,
    ),
    "strings": Task(
        "strings",
        make_strings,
        score_strings,
        "reverse or sort the letters of a word",
        make_ood=make_strings_ood,
        ood_items=_word_item,
    ),
    "format": Task(
        "format",
        make_format,
        score_format,
        "repeat a word n times in a given case and separator",
        make_ood=make_format_ood,
        ood_items=_word_item,
        components=format_components,
    ),
    "dialogue": Task(
        "dialogue",
        make_dialogue,
        score_dialogue,
        "multi-turn chat: recall a fact the user gave",
        make_ood=make_dialogue_ood,
        ood_items=_dialogue_items,
        components=dialogue_components,
    ),
}
SPLITS = ("train", "test", "ood")  # ood: the generalization split (see the module docs)


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise UnknownPluginError(f"unknown text task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def data_path(task: str, split: str) -> Path:
    return DATA_DIR / f"{task}_{split}.jsonl"


@cache
def _load(task: str, split: str) -> tuple[Record, ...]:
    path = data_path(task, split)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing; regenerate it with `python -m rlarena.envs.text.generate_data`"
        )
    with open(path, encoding="utf-8") as f:
        return tuple(json.loads(line) for line in f if line.strip())


def load_split(task: str, split: str) -> list[Record]:
    """The shipped records of ``task``: ``train``, ``test`` or ``ood`` (the generalization split)."""
    get_task(task)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}, got {split!r}")
    return list(_load(task, split))
