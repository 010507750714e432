"""The text environment against hand-computed cases: rewards, KL, termination, masks, GAE over padding.

A bigram "language model" (next-token logits depend only on the current token) makes every probability
known in advance, so the expected rewards are written out by hand.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rlarena import ops
from rlarena.algorithms.base import compute_advantages
from rlarena.envs.text.env import TextEnv, TextEnvConfig, make_text_env
from rlarena.envs.text.model import ModelConfig, TransformerLM, generate, response_mask
from rlarena.envs.text.policy import TextPolicy
from rlarena.envs.text.sft import save_lm
from rlarena.envs.text.tokenizer import EOS, PAD, CharTokenizer
from rlarena.errors import ConfigError
from rlarena.registry import get_env
from rlarena.rollout import EnvSettings

torch.set_num_threads(1)
TOK = CharTokenizer()
NEG = -1e9  # "impossible" logit


class BigramLM(nn.Module):
    """Logits of the next token = ``table[current token]``; a trainable embedding plays the hidden state."""

    hidden_size = 4

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table.clone())
        self.emb = nn.Embedding(table.shape[0], self.hidden_size)

    def forward(self, tokens, key_mask, cache=None, logits_to_keep=0):
        logits = self.table[tokens]
        return (logits[:, -logits_to_keep:] if logits_to_keep else logits), self.emb(tokens), []


def bigram(rows: dict[str, dict[str, float]]) -> torch.Tensor:
    """A logit table from ``{current char: {next char or "<eos>": probability}}``; other rows are uniform."""
    table = torch.zeros(TOK.vocab_size, TOK.vocab_size)
    for cur, nxt in rows.items():
        table[TOK.stoi[cur]] = NEG
        for ch, p in nxt.items():
            table[TOK.stoi[cur], EOS if ch == "<eos>" else TOK.stoi[ch]] = math.log(p)
    return table


# The policy answers deterministically; the reference is unsure, so the KL of each token is known:
#   prompt "x": x->a (ref 1/2), a->b (ref 1/4), b->EOS (ref 1)   response "ab", KL log 2 + log 4
#   prompt "y": y->EOS (ref 1)                                    response "",   KL 0
#   prompt "z": z->z forever (ref 1/2 each)                       no EOS: cut at T=4, KL 4 log 2
POLICY = {"x": {"a": 1}, "a": {"b": 1}, "b": {"<eos>": 1}, "y": {"<eos>": 1}, "z": {"z": 1}}
REFERENCE = {
    "x": {"a": 0.5, "c": 0.5},
    "a": {"b": 0.25, "d": 0.75},
    "b": {"<eos>": 1},
    "y": {"<eos>": 1},
    "z": {"z": 0.5, "<eos>": 0.5},
}
RECORDS = {  # task "strings": the score is the positional agreement with the target
    "x": {"prompt": "x", "response": "ab", "meta": {"target": "ab"}},  # "ab"   -> 1
    "y": {"prompt": "y", "response": "q", "meta": {"target": "q"}},  # ""     -> 0
    "z": {"prompt": "z", "response": "zz", "meta": {"target": "zz"}},  # "zzzz" -> 2/4
}
BETA, T = 0.1, 4


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("text") / "sft.pt")
    torch.manual_seed(0)
    lm = TransformerLM(ModelConfig(vocab_size=TOK.vocab_size, max_len=64, d_model=16, n_layer=1, n_head=2))
    save_lm(path, lm, TOK, "strings", {})
    return path


def bigram_env(
    checkpoint: str, num_envs: int = 12, kl_in_reward: bool = True, **cfg
) -> tuple[TextEnv, TextPolicy]:
    env = TextEnv(
        TextEnvConfig(task="strings", sft_checkpoint=checkpoint, kl_beta=BETA, **cfg),
        EnvSettings(num_envs, seed=0, kl_in_reward=kl_in_reward),
    )
    env.reference = BigramLM(bigram(REFERENCE)).requires_grad_(False)
    env.train_records = env.test_records = list(RECORDS.values())
    return env, TextPolicy(BigramLM(bigram(POLICY)))


def test_rewards_kl_termination_and_masks(tiny_checkpoint):
    env, policy = bigram_env(tiny_checkpoint)
    batch = env.collect(policy, T)
    assert (
        batch.layout == "sequence"
        and batch.rewards.shape == (T, 12)
        and batch.obs["prompt"].shape[:2] == (T, 12)
    )
    l2 = math.log(2)
    expected = {  # per prompt: rewards, dones, mask over the T response steps
        "x": ([-BETA * l2, -BETA * 2 * l2, 1.0, 0.0], [0, 0, 1, 1], [1, 1, 1, 0]),
        "y": ([0.0, 0.0, 0.0, 0.0], [1, 1, 1, 1], [1, 0, 0, 0]),
        "z": ([-BETA * l2, -BETA * l2, -BETA * l2, 0.5 - BETA * l2], [0, 0, 0, 1], [1, 1, 1, 1]),
    }
    scores = {"x": 1.0, "y": 0.0, "z": 0.5}
    seen = set()
    for n in range(12):
        prompt = TOK.decode(batch.obs["prompt"][0, n][batch.obs["prompt_mask"][0, n]])
        seen.add(prompt)
        rewards, dones, mask = expected[prompt]
        torch.testing.assert_close(batch.rewards[:, n], torch.tensor(rewards), atol=1e-5, rtol=0)
        assert batch.dones[:, n].tolist() == dones
        assert batch.mask[:, n].tolist() == [bool(m) for m in mask]
        assert (batch.actions[:, n][~batch.mask[:, n]] == PAD).all()  # padding after the end
        assert batch.info["episode_returns"][n] == scores[prompt]  # the true task score
    assert seen == {"x", "y", "z"}
    assert torch.equal(batch.last_value, torch.zeros(12))
    # Collection-time log-probs are the policy's: log 1 = 0 on every real token.
    torch.testing.assert_close(batch.logp[batch.mask], torch.zeros(batch.num_valid), atol=1e-6, rtol=0)
    assert batch.info["stat/kl_beta"] == BETA


def test_kl_left_out_of_the_rewards_for_an_in_loss_kl(tiny_checkpoint):
    """EnvSettings.kl_in_reward=False (GRPO's kl_coef): the rewards are the final scores alone, and the batch
    carries the reference's log-probs of the sampled tokens, from which the per-token KL is recovered."""
    env, policy = bigram_env(tiny_checkpoint, kl_in_reward=False)
    batch = env.collect(policy, T)
    final = {"x": [0.0, 0.0, 1.0, 0.0], "y": [0.0, 0.0, 0.0, 0.0], "z": [0.0, 0.0, 0.0, 0.5]}
    l2 = math.log(2)
    ref_logp = {"x": [-l2, -2 * l2, 0.0], "y": [0.0], "z": [-l2, -l2, -l2, -l2]}  # REFERENCE's bigrams
    for n in range(12):
        prompt = TOK.decode(batch.obs["prompt"][0, n][batch.obs["prompt_mask"][0, n]])
        torch.testing.assert_close(batch.rewards[:, n], torch.tensor(final[prompt]), atol=1e-6, rtol=0)
        got = batch.ref_logp[:, n][batch.mask[:, n]]
        torch.testing.assert_close(got, torch.tensor(ref_logp[prompt]), atol=1e-5, rtol=0)
    assert batch.info["stat/kl"] > 0 and batch.info["stat/kl_beta"] == 0.0  # reported, not in the reward
    mb = next(batch.replace(advantages=batch.rewards, returns=batch.rewards).minibatches(3))
    assert mb.ref_logp is not None and mb.ref_logp.shape == mb.old_logp.shape == (T, 4)
    with pytest.raises(ConfigError, match="leave env.kl_target null"):
        bigram_env(tiny_checkpoint, kl_in_reward=False, kl_target=1.0)


def test_policy_evaluate_matches_collection(tiny_checkpoint):
    env, policy = bigram_env(tiny_checkpoint)
    batch = env.collect(policy, T)
    out = policy.evaluate(batch.obs, batch.actions)
    assert out.logp.shape == out.entropy.shape == out.value.shape == (T, 12)
    assert out.dist.batch_shape == (T, 12)
    torch.testing.assert_close(out.logp, batch.logp)  # ratio exactly 1 at the first PPO epoch
    torch.testing.assert_close(out.value, batch.values)


def test_evaluate_reports_scores_and_kl(tiny_checkpoint, tmp_path):
    env, policy = bigram_env(tiny_checkpoint, max_new_tokens=T)
    env.run_dir = str(tmp_path)
    result = env.evaluate(policy, 3, deterministic=True)
    assert result["returns"] == [1.0, 0.0, 0.5]
    # Exact KL of a deterministic policy to the reference = -log ref(token), summed over the response.
    expected_kl = [3 * math.log(2), 0.0, 4 * math.log(2)]
    assert result["kl"] == pytest.approx(sum(expected_kl) / 3, abs=1e-4)
    assert result["length"] == pytest.approx((3 + 1 + 4) / 3)
    assert len(result["samples"]) == 3 and (tmp_path / "text_samples.jsonl").exists()
    # The score's 95% interval: a bootstrap over the 3 prompts, so inside [0, 1] around the mean 0.5.
    assert 0.0 <= result["score_ci_low"] < 0.5 < result["score_ci_high"] <= 1.0
    assert env.evaluate(policy, 3, deterministic=True)["score_ci_low"] == result["score_ci_low"]  # seeded


OOD_KEYS = {"ood_score", "ood_exact", "ood_score_ci_low", "ood_score_ci_high"}


def test_evaluate_scores_the_generalization_split(tiny_checkpoint, tmp_path):
    env, policy = bigram_env(tiny_checkpoint, max_new_tokens=T)
    assert len(env.ood_records) == 200  # the shipped strings_ood.jsonl
    env.ood_records = [RECORDS["z"], RECORDS["x"], RECORDS["y"]]  # known scores: 0.5, 1, 0
    result = env.evaluate(policy, 3, deterministic=True)
    assert set(result) >= OOD_KEYS and result["returns"] == [1.0, 0.0, 0.5]  # held-out scores as before
    assert result["ood_score"] == pytest.approx(0.5) and result["ood_exact"] == pytest.approx(1 / 3)
    assert 0.0 <= result["ood_score_ci_low"] < 0.5 < result["ood_score_ci_high"] <= 1.0
    off, _ = bigram_env(tiny_checkpoint, max_new_tokens=T, ood_eval=False)
    assert off.ood_records == [] and not OOD_KEYS & set(off.evaluate(policy, 3, deterministic=True))


@pytest.mark.parametrize("deterministic", [True, False])
def test_generalization_split_leaves_the_held_out_figures_unchanged(tiny_checkpoint, deterministic):
    """A real (tiny, random) LM on the shipped strings splits: the held-out figures are bit-identical with
    ood_eval on and off; sampled, the ood part must not draw from the held-out part's generator."""
    results = {}
    for ood_eval in (True, False):
        cfg = TextEnvConfig(
            task="strings", sft_checkpoint=tiny_checkpoint, max_new_tokens=6, ood_eval=ood_eval
        )
        env = TextEnv(cfg, EnvSettings(2, seed=0))
        results[ood_eval] = env.evaluate(env.make_policy({}), 6, deterministic=deterministic)
    on, off = results[True], results[False]
    assert set(on) - set(off) == OOD_KEYS and not OOD_KEYS & set(off)
    assert {k: on[k] for k in off} == off  # every key and value of the held-out evaluation, samples too
    assert 0.0 <= on["ood_score_ci_low"] <= on["ood_score"] <= on["ood_score_ci_high"] <= 1.0
    assert 0.0 <= on["ood_exact"] <= on["ood_score"]


def test_gae_over_padded_responses_equals_per_sequence_gae(tiny_checkpoint):
    env, policy = bigram_env(tiny_checkpoint)
    batch = env.collect(policy, T)
    g = torch.Generator().manual_seed(1)
    batch.values = torch.randn(T, 12, generator=g)  # arbitrary critic, padding included
    batch.rewards = batch.rewards + torch.randn(T, 12, generator=g) * batch.mask
    gamma, lam = 0.97, 0.9
    compute_advantages(batch, gamma, lam)
    for n in range(12):
        length = int(batch.mask[:, n].sum())
        r, v = batch.rewards[:length, n, None], batch.values[:length, n, None]
        dones = torch.zeros(length, 1)
        dones[-1] = 1
        adv, ret = ops.gae_reference(r, v, dones, torch.zeros(1), gamma, lam)
        torch.testing.assert_close(batch.advantages[:length, n], adv[:, 0])
        torch.testing.assert_close(batch.returns[:length, n], ret[:, 0])
        assert (batch.advantages[length:, n] == 0).all()


def test_adaptive_kl_controller_moves_beta(tiny_checkpoint):
    env, policy = bigram_env(tiny_checkpoint, kl_target=0.1, kl_horizon=100)
    env.collect(policy, T)  # KL per response is ~1.6 nats > target: beta grows by the clipped 20% * 12/100
    assert env.kl_beta == pytest.approx(BETA * (1 + 0.2 * 12 / 100))
    state = env.state_dict()
    env.collect(policy, T)
    env.load_state_dict(state)
    assert env.kl_beta == pytest.approx(BETA * (1 + 0.2 * 12 / 100))


def test_kv_cache_generation_matches_full_forward():
    torch.manual_seed(0)
    lm = TransformerLM(
        ModelConfig(vocab_size=TOK.vocab_size, max_len=64, d_model=32, n_layer=2, n_head=4)
    ).eval()
    prompt, mask = TOK.encode_prompts(["Reverse: abc\n> ", "Q: 1+1?", "x"])
    g = torch.Generator().manual_seed(0)
    responses = generate(lm, prompt, mask, 6, EOS, PAD, g)
    # The same tokens scored in one teacher-forced pass give the logits generation sampled from.
    key_mask = torch.cat([mask, torch.ones_like(responses, dtype=torch.bool)], 1)
    full, _, _ = lm(torch.cat([prompt, responses], 1), key_mask)
    logits, _, cache = lm(prompt, mask)
    steps = [logits[:, -1]]
    for t in range(5):
        logits, _, cache = lm(responses[:, t : t + 1], key_mask[:, : prompt.shape[1] + t + 1], cache)
        steps.append(logits[:, -1])
    p = prompt.shape[1]
    torch.testing.assert_close(torch.stack(steps, 1), full[:, p - 1 : p + 5], atol=1e-5, rtol=1e-4)
    # Left padding is invisible: a prompt alone gives the same next-token logits as inside the batch.
    alone, _, _ = lm(*TOK.encode_prompts(["x"]))
    torch.testing.assert_close(alone[0, -1], full[2, p - 1], atol=1e-5, rtol=1e-4)
    assert response_mask(torch.tensor([[5, EOS, PAD], [5, 6, 7]]), EOS).tolist() == [[1, 1, 0], [1, 1, 1]]


def test_registry_factory_and_missing_checkpoint_message(tmp_path, tiny_checkpoint):
    import rlarena.envs.text  # noqa: F401  (registers text/<task>)

    factory = get_env("text/strings")
    env = factory(
        {"name": "text/strings", "sft_checkpoint": tiny_checkpoint, "algo_defaults": {}}, EnvSettings(2)
    )
    assert env.num_envs == 2 and env.name == "text/strings"
    with pytest.raises(FileNotFoundError, match=r"rlarena sft task=arithmetic"):
        get_env("text/arithmetic")({"sft_checkpoint": str(tmp_path / "none.pt")}, EnvSettings(2))
    with pytest.raises(FileNotFoundError, match=r"rlarena reward-model task=strings"):
        make_text_env(
            {"reward": "rm", "sft_checkpoint": tiny_checkpoint, "rm_checkpoint": str(tmp_path / "rm.pt")},
            EnvSettings(2),
            "strings",
        )
    with pytest.raises(ValueError, match="unknown text env keys"):
        make_text_env({"rewrad": "rm"}, EnvSettings(2), "strings")
    with pytest.raises(ValueError, match="was trained on task"):
        make_text_env({"sft_checkpoint": tiny_checkpoint}, EnvSettings(2), "format")
