"""A Hugging Face causal LM from a local folder as the text env's LM: a tiny GPT-2 made here.."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

import rlarena.algorithms  # noqa: E402,F401  (registers the algorithms)
from rlarena.envs.text.env import make_text_env  # noqa: E402
from rlarena.envs.text.hf import HFTokenizer, load_hf_lm  # noqa: E402
from rlarena.envs.text.model import ModelConfig, TransformerLM, generate  # noqa: E402
from rlarena.envs.text.tokenizer import CharTokenizer  # noqa: E402
from rlarena.registry import get_algorithm  # noqa: E402
from rlarena.rollout import EnvSettings  # noqa: E402

torch.set_num_threads(1)


def tiny_gpt2(path, with_tokenizer: bool) -> None:
    torch.manual_seed(0)
    chars = CharTokenizer().chars
    config = transformers.GPT2Config(
        vocab_size=99, n_positions=128, n_embd=32, n_layer=2, n_head=2, bos_token_id=1, eos_token_id=2
    )
    transformers.GPT2LMHeadModel(config).save_pretrained(path)
    if with_tokenizer:  # a character-level BPE (no merges) with the special tokens at 0, 1, 2
        from tokenizers import Tokenizer, decoders, models

        vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, **{c: i + 3 for i, c in enumerate(chars)}}
        tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        tok.decoder = decoders.Fuse()  # characters join without spaces
        fast = transformers.PreTrainedTokenizerFast(
            tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>"
        )
        fast.save_pretrained(path)


@pytest.mark.parametrize("with_tokenizer", [False, True])
def test_hf_lm_generates_and_trains_in_the_text_env(tmp_path, with_tokenizer):
    tiny_gpt2(tmp_path, with_tokenizer)
    lm, tok = load_hf_lm(str(tmp_path))
    assert isinstance(tok, HFTokenizer if with_tokenizer else CharTokenizer)
    if with_tokenizer:
        assert tok.decode(tok.encode("Reverse: ab", eos=True) + [5]) == "Reverse: ab"

    # The KV-cache generation samples from the logits a teacher-forced pass gives (left padding included).
    prompt, mask = tok.encode_prompts(["Reverse: abc\n> ", "x"])
    responses = generate(
        lm, prompt, mask, 5, tok.eos_id, tok.pad_id, torch.Generator().manual_seed(0), greedy=True
    )
    full, _, _ = lm(
        torch.cat([prompt, responses], 1), torch.cat([mask, torch.ones_like(responses, dtype=torch.bool)], 1)
    )
    p = prompt.shape[1]
    assert torch.equal(full[:, p - 1 : p + 4].argmax(-1), responses[:, :5])

    env = make_text_env(
        {"hf_path": str(tmp_path), "max_new_tokens": 5}, EnvSettings(num_envs=4, seed=0), "strings"
    )
    cls = get_algorithm("ppo")
    cfg = cls.Config(
        num_envs=4, num_steps=5, num_minibatches=2, update_epochs=1, gamma=1.0, learning_rate=1e-3
    )
    policy = env.make_policy(cfg.policy)
    with torch.no_grad():  # move away from the reference: the KL penalty makes the rewards non-zero
        for q in policy.actor_parameters():
            q.add_(0.05 * torch.randn(q.shape))
    algo = cls(cfg, policy, seed=0)
    batch = env.collect(policy, algo.rollout_length)
    out = policy.evaluate(batch.obs, batch.actions)
    torch.testing.assert_close(out.logp, batch.logp)
    before = [q.detach().clone() for q in policy.actor_parameters()]
    algo.update(batch)
    assert any(not torch.equal(b, q) for b, q in zip(before, policy.actor_parameters()))
    assert len(env.evaluate(policy, 2)["returns"]) == 2


@pytest.mark.parametrize("algo_name", ["ppo", "trpo"])
def test_hf_train_layers_trains_only_the_top_layers_in_the_env(tmp_path, algo_name):
    """env.hf_train_layers=1: RL steps the top decoder layer (and the final norm) and leaves the layers
    below and the embeddings as loaded; TRPO's natural gradient over the trainable parameters only."""
    tiny_gpt2(tmp_path, with_tokenizer=True)
    env = make_text_env(
        {"hf_path": str(tmp_path), "max_new_tokens": 5, "hf_train_layers": 1},
        EnvSettings(num_envs=4, seed=0),
        "strings",
    )
    cls = get_algorithm(algo_name)
    extra = {"num_minibatches": 2, "update_epochs": 1} if algo_name == "ppo" else {}
    cfg = cls.Config(num_envs=4, num_steps=5, gamma=1.0, **extra)
    policy = env.make_policy(cfg.policy)
    names = {id(q): n for n, q in policy.lm.named_parameters()}
    trained = {names[id(q)] for q in policy.actor_parameters()}
    top = ("model.transformer.h.1.", "model.transformer.ln_f.")
    assert trained and all(n.startswith(top) for n in trained)
    with torch.no_grad():  # move away from the reference: the KL penalty makes the rewards non-zero
        for q in policy.actor_parameters():
            q.add_(0.05 * torch.randn(q.shape))
    before = {n: q.detach().clone() for n, q in policy.lm.named_parameters()}
    algo = cls(cfg, policy, seed=0)
    algo.update(env.collect(policy, algo.rollout_length))
    after = dict(policy.lm.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before if n not in trained)
    assert any(not torch.equal(before[n], after[n]) for n in trained)


def test_the_reward_model_reads_a_hf_policys_responses_as_text(tmp_path):
    """env.reward=rm with env.hf_path: the reward model (character tokens) scores the decoded prompt and
    response, encoded with its own tokenizer, as it scores the same text from the character-level policy."""
    from rlarena.envs.text.reward_model import TextRewardModel, load_text_reward_model
    from rlarena.envs.text.sft import save_lm

    tiny_gpt2(tmp_path / "lm", with_tokenizer=True)
    char = CharTokenizer()
    torch.manual_seed(1)
    lm = TransformerLM(ModelConfig(char.vocab_size, d_model=16, n_layer=1, n_head=2))
    rm = TextRewardModel(lm)
    torch.nn.init.normal_(rm.head.weight)
    save_lm(str(tmp_path / "rm.pt"), lm, char, "strings", {}, rm.state_dict())
    env = make_text_env(
        {
            "hf_path": str(tmp_path / "lm"),
            "max_new_tokens": 5,
            "reward": "rm",
            "rm_checkpoint": str(tmp_path / "rm.pt"),
        },
        EnvSettings(num_envs=4, seed=0),
        "strings",
    )
    policy = env.make_policy({})
    records = env.train_records[:4]
    out = env._score_responses(policy, records, 5, torch.Generator().manual_seed(0))
    reference = load_text_reward_model(str(tmp_path / "rm.pt"), "strings")
    prompt, prompt_mask = char.encode_prompts([r["prompt"] for r in records])
    for i, text in enumerate(out["texts"]):
        ended = bool((out["responses"][i] == env.tokenizer.eos_id).any())
        ids = torch.tensor([char.encode(text, eos=ended) or [char.eos_id]])
        want = reference.score(
            prompt[i : i + 1], prompt_mask[i : i + 1], ids, torch.ones_like(ids, dtype=torch.bool)
        )
        torch.testing.assert_close(out["rm_scores"][i], want[0])


def test_missing_hf_folder_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="hf_path"):
        load_hf_lm(str(tmp_path / "none"))


def test_sft_of_a_hf_model_learns_the_demonstrations(tmp_path):
    """rlarena sft hf_path=...: the held-out response loss falls (all layers training a random tiny model;
    on SmolLM2 the default trains the top 4 of its pretrained layers)."""
    from rlarena.envs.text.hf_sft import HFSFTConfig, train_hf_sft

    tiny_gpt2(tmp_path / "base", with_tokenizer=True)
    cfg = HFSFTConfig(
        hf_path=str(tmp_path / "base"), task="format", out=str(tmp_path / "sft"), steps=60, batch_size=8,
        learning_rate=3e-3, train_layers=0, eval_every=60, eval_prompts=8, max_new_tokens=6,
    )  # fmt: skip
    metrics = train_hf_sft(cfg, log=lambda line: None)
    assert metrics["heldout_loss"] < 0.9 * metrics["heldout_loss_initial"]  # measured 4.60 -> 3.77


def test_sft_of_a_hf_model_trains_only_its_top_layers_and_writes_a_folder_the_env_loads(tmp_path):
    """train_layers=1: the layers below and the (tied) embeddings keep their pretrained weights, the top
    layer changes, and the output folder loads, with its tokenizer, as the env's LM; nothing half-written is
    left beside it."""
    from rlarena.envs.text.hf_sft import HFSFTConfig, train_hf_sft

    tiny_gpt2(tmp_path / "base", with_tokenizer=True)
    before = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "base").state_dict()
    cfg = HFSFTConfig(
        hf_path=str(tmp_path / "base"), task="format", out=str(tmp_path / "sft"), steps=5, batch_size=4,
        learning_rate=1e-2, train_layers=1, eval_every=5, eval_prompts=4, max_new_tokens=4,
    )  # fmt: skip
    metrics = train_hf_sft(cfg, log=lambda line: None)
    assert metrics["trained_parameters"] < sum(v.numel() for v in before.values()) / 2
    after = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "sft").state_dict()
    for frozen in ("transformer.h.0.attn.c_attn.weight", "transformer.wte.weight"):
        assert torch.equal(after[frozen], before[frozen]), frozen
    trained = "transformer.h.1.mlp.c_fc.weight"
    assert not torch.equal(after[trained], before[trained])
    lm, tok = load_hf_lm(str(tmp_path / "sft"))
    assert isinstance(tok, HFTokenizer)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # nothing half-written left behind


def test_reward_model_on_a_hf_sft_model_learns_and_the_env_scores_with_it(tmp_path):
    """rlarena reward-model hf_path=...: the SFT model with a scalar head learns the labeler's order of its
    own samples; its folder loads as env.rm_checkpoint for a Hugging Face policy, which it scores through
    the decoded text; a wrong task or a folder without the head is refused by name."""
    from rlarena.envs.text.env import load_reward_model
    from rlarena.envs.text.hf_reward_model import HFRMConfig, train_hf_reward_model
    from rlarena.envs.text.hf_sft import HFSFTConfig, train_hf_sft
    from rlarena.errors import ConfigError, MissingFileError

    tiny_gpt2(tmp_path / "base", with_tokenizer=True)
    sft = HFSFTConfig(
        hf_path=str(tmp_path / "base"), task="format", out=str(tmp_path / "sft"), steps=60, batch_size=8,
        learning_rate=3e-3, train_layers=0, eval_every=60, eval_prompts=4, max_new_tokens=6,
    )  # fmt: skip
    train_hf_sft(sft, log=lambda line: None)
    cfg = HFRMConfig(
        hf_path=str(tmp_path / "sft"), task="format", prompts=48, heldout_prompts=16, steps=40,
        batch_prompts=8, learning_rate=3e-3, train_layers=0, max_new_tokens=6,
    )  # fmt: skip
    assert cfg.out == str(tmp_path / "sft") + "-rm"
    metrics = train_hf_reward_model(cfg, log=lambda line: None)
    assert metrics["train_pairs"] > 50
    # Chance is 0.5 (the zero head ties every pair); measured 0.79 and 0.80 with seeds 0 and 1.
    assert metrics["train_accuracy"] > 0.65, metrics
    assert set(metrics) >= {"heldout_accuracy_count", "heldout_accuracy_word", "heldout_accuracy_case"}

    env = make_text_env(
        {"hf_path": str(tmp_path / "sft"), "max_new_tokens": 6, "reward": "rm", "rm_checkpoint": cfg.out},
        EnvSettings(num_envs=4, seed=0),
        "format",
    )
    records = env.train_records[:4]
    out = env._score_responses(env.make_policy({}), records, 6, torch.Generator().manual_seed(0))
    rm = load_reward_model(cfg.out, "format")
    assert rm.reads_text and isinstance(rm.tokenizer, HFTokenizer)
    ended = (out["responses"] == env.tokenizer.eos_id).any(1).tolist()
    want = rm.score_texts([r["prompt"] for r in records], out["texts"], ended, rm.tokenizer)
    torch.testing.assert_close(out["rm_scores"], want)
    assert out["rm_scores"].std() > 0

    with pytest.raises(ConfigError, match="trained on task 'format'"):
        load_reward_model(cfg.out, "dialogue")
    with pytest.raises(MissingFileError, match="not a reward model folder"):
        load_reward_model(str(tmp_path / "sft"), "format")
