"""The task suite: prompt makers (used by ``generate_data.py``), demonstrations and programmatic scorers.

A task record is ``{"prompt": str, "response": str, "meta": {...}}``: ``response`` is the demonstration
(Step 0 of InstructGPT), ``meta`` holds what the scorer needs. Like human demonstrators, the simulated ones
are imperfect: a share of the ``format`` and ``dialogue`` demonstrations is off-style (one item too many; a
chatty or indirect answer), so the SFT model imitates flaws the scorer penalizes and RL has something to
fix, as in InstructGPT, where the RL policy beats the SFT one. A scorer maps (record, response) to a score
in [0, 1]; it is the "true" reward (evaluation, ``env.reward=oracle``) and the synthetic labeler that ranks
responses for the reward model. Scorers give partial credit so that the RL signal is not all-or-nothing.
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


def pseudo_word(rng: random.Random, min_len: int, max_len: int) -> str:
    """A pronounceable made-up word (consonant/vowel alternation), so no word list needs shipping."""
    n = rng.randint(min_len, max_len)
    start = rng.random() < 0.5
    return "".join(rng.choice(_CONSONANTS if (i % 2 == 0) == start else _VOWELS) for i in range(n))


def similarity(a: str, b: str) -> float:
    """Fraction of positions where two strings agree, over the longer length (1 = identical)."""
    if not a and not b:
        return 1.0
    return sum(x == y for x, y in zip(a, b)) / max(len(a), len(b))


# ---- arithmetic question answering --------------------------------------------------------------------


def make_arithmetic(rng: random.Random) -> Record:
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    op = rng.choice("+-")
    if op == "-" and b > a:  # keep answers non-negative
        a, b = b, a
    answer = a + b if op == "+" else a - b
    return {"prompt": f"Q: What is {a}{op}{b}?\nA: ", "response": str(answer), "meta": {"answer": answer}}


def score_arithmetic(record: Record, response: str) -> float:
    """1 for the exact answer; a number within 10 of it earns up to 0.5; anything else 0."""
    answer = record["meta"]["answer"]
    text = response.strip()
    if not text.isdigit():
        return 0.0
    error = abs(int(text) - answer)
    return 1.0 if error == 0 else 0.5 * max(0.0, 1.0 - error / 10)


# ---- string transformation: reverse or sort a word ----------------------------------------------------


def make_strings(rng: random.Random) -> Record:
    word = pseudo_word(rng, 3, 7)
    op = rng.choice(["reverse", "sort"])
    target = word[::-1] if op == "reverse" else "".join(sorted(word))
    verb = "Reverse" if op == "reverse" else "Sort the letters of"
    return {"prompt": f"{verb}: {word}\n> ", "response": target, "meta": {"target": target}}


def score_strings(record: Record, response: str) -> float:
    """Positional character agreement with the target (1 = exact)."""
    return similarity(response.strip(), record["meta"]["target"])


# ---- follow-the-format instruction --------------------------------------------------------------------

_CASES = {"uppercase": str.upper, "lowercase": str.lower, "capitalized": str.capitalize}
_SEPS = {"commas": ",", "dashes": "-", "semicolons": ";", "slashes": "/", "plus signs": "+"}


def make_format(rng: random.Random) -> Record:
    word = pseudo_word(rng, 3, 4)
    n = rng.randint(2, 4)
    case = rng.choice(sorted(_CASES))
    sep_name = rng.choice(sorted(_SEPS))
    sep = _SEPS[sep_name]
    # A quarter of the demonstrations miscount: one item too many.
    demo = sep.join([_CASES[case](word)] * (n + (rng.random() < FORMAT_FLAWED)))
    prompt = f"Write {word} {n} times in {case}, separated by {sep_name}.\n> "
    return {"prompt": prompt, "response": demo, "meta": {"word": word, "n": n, "case": case, "sep": sep}}


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
_STATEMENTS = {
    "name": "I am {v}.",
    "color": "My color is {v}.",
    "pet": "I have a {v}.",
    "city": "I live in {v}.",
}
_ACKS = {"name": "Hi {v}!", "color": "Nice, {v}.", "pet": "A {v}, cute!", "city": "{v} is lovely."}


def make_dialogue(rng: random.Random) -> Record:
    """A short conversation: the user states two facts over two turns, then asks for one of them."""
    attrs = rng.sample(sorted(_FACTS), 2)
    values = {a: rng.choice(_FACTS[a]) for a in attrs}
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


@dataclass(frozen=True)
class Task:
    name: str
    make: Callable[[random.Random], Record]
    score: Callable[[Record, str], float]
    description: str
    # The scorer's parts, where it has several (a reward model's accuracy is reported per part: which of
    # them it learned). None: the score is one check.
    components: Callable[[Record, str], dict[str, float]] | None = None


TASKS: dict[str, Task] = {
    "arithmetic": Task("arithmetic", make_arithmetic, score_arithmetic, "two-number addition/subtraction QA"),
    "strings": Task("strings", make_strings, score_strings, "reverse or sort the letters of a word"),
    "format": Task(
        "format",
        make_format,
        score_format,
        "repeat a word n times in a given case and separator",
        format_components,
    ),
    "dialogue": Task(
        "dialogue",
        make_dialogue,
        score_dialogue,
        "multi-turn chat: recall a fact the user gave",
        dialogue_components,
    ),
}


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
    """The shipped records of ``task`` (``train`` or ``test``)."""
    get_task(task)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return list(_load(task, split))
