"""Reward from preferences on text: the environment's side of the contract (rlarena/preferences.py).

Responses to one prompt are the comparable units; the text reward model learns from labeled pairs; relabeling
swaps the task score at a response's last token for the model's, keeping the per-token KL penalty. These run
on a tiny random LM (no pipeline step); tests/test_text_pipeline.py has the learning test on the SFT model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rlarena.algorithms  # noqa: F401  (registers the algorithms)
import rlarena.envs.text  # noqa: F401  (registers text/<task>)
from rlarena.algorithms.preference import LabelerConfig, SyntheticLabeler
from rlarena.bench.configs import build_algo_config, load_config
from rlarena.errors import ConfigError, MissingFileError
from rlarena.preferences import LabeledPair, PreferenceSettings, Segment
from rlarena.registry import get_env
from rlarena.reward_ensemble import RewardModelConfig
from rlarena.rollout import EnvSettings

torch.set_num_threads(1)
TASK = "format"


def _env(num_envs: int = 8, k: int = 4, seed: int = 0):
    cfg = {"sft_checkpoint": "untrained", "max_new_tokens": 6}
    return get_env(f"text/{TASK}")(cfg, EnvSettings(num_envs, seed=seed, responses_per_prompt=k))


def _support(env, **rm):
    settings = PreferenceSettings(reward_model=RewardModelConfig(**{"batch_size": 8, **rm}))
    return env.preference_support(settings)


def test_columns_of_one_group_answer_one_prompt_and_pairs_stay_inside_groups():
    env = _env()
    batch = env.collect(env.make_policy({}), 6)
    prompts = batch.obs["prompt"][0]
    assert torch.equal(prompts[0], prompts[3]) and torch.equal(prompts[4], prompts[7])
    pairs = _support(env).candidate_pairs(batch, 100, torch.Generator().manual_seed(0))
    assert len(pairs) == 2 * 6  # every pair inside the two groups of 4: 2 x (4 choose 2)
    for a, b in pairs:
        assert a.unit == b.unit == "response" and a is not b
        assert a.meta["prompt_group"] == b.meta["prompt_group"]
        assert a.display["prompt"] == b.display["prompt"] and a.display["prompt"].startswith("Write ")
        assert np.array_equal(a.obs, b.obs) and len(a.true_rewards) == 1
    scores = batch.info["task_scores"]
    first = pairs[0][0]
    assert float(first.true_return) in [float(s) for s in scores]


def test_a_batch_that_groups_do_not_divide_is_refused():
    with pytest.raises(ConfigError, match="do not divide a batch of 6"):
        _env(num_envs=6, k=4)
    with pytest.raises(ConfigError, match=">= 2 responses per prompt"):
        _support(_env(num_envs=4, k=1))


def test_relabel_swaps_the_score_at_the_last_token_and_keeps_the_kl_penalty():
    env = _env()
    policy = env.make_policy({})
    with torch.no_grad():  # away from the reference, so the per-token KL penalty is not zero
        policy.lm.tok_emb.weight.add_(0.3 * torch.randn(policy.lm.tok_emb.weight.shape))
    batch = env.collect(policy, 6)
    support = _support(env)
    model = support.make_reward_model(seed=0)
    untrained = support.relabel(batch, model)
    last = batch.mask.sum(0) - 1
    cols = torch.arange(batch.num_envs)
    expected = batch.rewards.double().clone()
    expected[last, cols] -= batch.info["final_rewards"].double()  # no model yet: the KL penalty alone
    assert torch.allclose(untrained.rewards, expected)
    assert (batch.rewards != 0).sum() > batch.num_envs, "the KL penalty should be on every token"

    pairs = support.candidate_pairs(batch, 12, torch.Generator().manual_seed(1))
    model.add([LabeledPair(a, b, 1.0) for a, b in pairs])
    model.fit()
    trained = support.relabel(batch, model)
    predicted = trained.rewards - expected
    off_last = torch.ones_like(predicted, dtype=torch.bool)
    off_last[last, cols] = False
    assert torch.equal(predicted[off_last], torch.zeros_like(predicted[off_last]))  # only the last token
    # Logged per prompt, as deviations from the prompt's mean (the model ranks responses to one prompt).
    assert torch.allclose(
        predicted[last, cols].view(-1, 4) - predicted[last, cols].view(-1, 4).mean(1, True),
        trained.predicted.view(-1, 4),
    )
    scores = batch.info["task_scores"].double().view(-1, 4)
    assert torch.allclose(trained.true.view(-1, 4), scores - scores.mean(1, keepdim=True))


def test_the_text_reward_model_learns_a_preference_and_round_trips(tmp_path):
    env = _env(num_envs=16)
    batch = env.collect(env.make_policy({}), 6)
    support = _support(env, ensemble_size=2, epochs=30, max_steps_per_round=60, learning_rate=1e-3)
    pairs = support.candidate_pairs(batch, 40, torch.Generator().manual_seed(0))
    # A made-up preference the model can read: the larger last token id wins (ties are left out).
    labeled = [LabeledPair(a, b, float(a.actions[-1] > b.actions[-1])) for a, b in pairs]
    labeled = [p for p in labeled if p.a.actions[-1] != p.b.actions[-1]]
    assert len(labeled) >= 10
    model = support.make_reward_model(seed=0)
    model.add(labeled)
    metrics = model.fit()
    assert metrics["train_accuracy"] > 0.9, metrics
    assert model.num_labels == len(labeled) and model.trained
    assert model.disagreement([p.a for p in labeled], [p.b for p in labeled]).shape == (len(labeled),)

    torch.save(model.state_dict(), tmp_path / "rm.pt")
    fresh = support.make_reward_model(seed=0)
    fresh.load_state_dict(torch.load(tmp_path / "rm.pt", weights_only=True))
    c = support._columns(batch)
    args = (c["prompt"], c["prompt_mask"], c["responses"], c["resp_mask"])
    assert torch.equal(fresh.score(*args), model.score(*args)) and fresh.num_labels == model.num_labels


def test_the_synthetic_labeler_prefers_the_higher_task_score():
    a = Segment([1, 2], [3], [0.9], unit="response", display={"prompt": "p", "response": "x"})
    b = Segment([1, 2], [4, 5], [0.2], unit="response", display={"prompt": "p", "response": "yz"})
    labeler = SyntheticLabeler(LabelerConfig(), seed=0)
    labeler.ask([(a, b), (b, a)])
    assert [p.target for p in labeler.poll()] == [1.0, 0.0]
    again = Segment.from_bytes(a.to_bytes())
    assert again.unit == "response" and again.display == a.display and np.array_equal(again.actions, [3])
    assert Segment.from_json(a.to_json()).display == {"prompt": "p", "response": "x"}


def test_a_wrapper_gets_the_family_defaults_of_its_inner_algorithm():
    """algo=preference on text: the inner PPO gets the text family's minibatches, the reward model its
    nested defaults, and what the command line set wins."""
    cfg = load_config(["algo=preference", "env=text/format", "algo.reward_model.epochs=3"])
    algo = build_algo_config(cfg, explicit_keys={"algo.reward_model.epochs"})
    assert algo.inner_config().num_minibatches == 4 and algo.num_envs == 64
    assert algo.reward_model.max_steps_per_round == 20 and algo.reward_model.epochs == 3


def test_the_kl_default_follows_the_learned_reward_scale_unless_chosen():
    env = _env()
    assert env.kl_beta == 0.02  # the oracle's default, for scores in [0, 1]
    _support(env)
    assert env.kl_beta == 0.2  # the learned model's scores have unit std, as env.reward=rm's
    chosen = get_env(f"text/{TASK}")(
        {"sft_checkpoint": "untrained", "kl_beta": 0.05}, EnvSettings(4, responses_per_prompt=2)
    )
    _support(chosen)
    assert chosen.kl_beta == 0.05


def test_best_of_n_picks_by_the_reward_model_and_states_its_kl():
    import math

    from rlarena.envs.text.best_of_n import best_of_n_kl, curve

    gold = torch.tensor([[0.2, 1.0, 0.5, 0.0], [0.4, 0.0, 0.9, 1.0]])
    rm = torch.tensor([[0.0, 2.0, 1.0, 3.0], [1.0, 0.5, 0.0, -1.0]])  # prompt 1: the RM is wrong at n=4
    rows = {r["n"]: r for r in curve(gold, rm, [1, 2, 4])}
    assert rows[1]["score"] == pytest.approx(0.3) and rows[1]["kl"] == 0.0
    assert rows[2]["score"] == pytest.approx((1.0 + 0.4) / 2)
    assert rows[4]["score"] == pytest.approx((0.0 + 0.4) / 2)  # over-optimized: the RM's pick scores 0
    assert rows[4]["rm_score"] == pytest.approx((3.0 + 1.0) / 2)
    assert rows[4]["oracle_best_score"] == pytest.approx(1.0)
    assert best_of_n_kl(4) == pytest.approx(math.log(4) - 0.75)


def test_a_reward_model_warm_start_scores_as_the_saved_model_from_the_first_update(tmp_path):
    from rlarena.envs.text.model import ModelConfig, TransformerLM
    from rlarena.envs.text.reward_model import TextRewardModel
    from rlarena.envs.text.sft import save_lm
    from rlarena.envs.text.tokenizer import CharTokenizer

    tok = CharTokenizer()
    torch.manual_seed(0)  # the shape of the env's tiny untrained LM, other weights
    saved = TextRewardModel(TransformerLM(ModelConfig(tok.vocab_size, d_model=32, n_layer=1, n_head=2)))
    with torch.no_grad():
        saved.score_mean.fill_(0.3)
        saved.score_std.fill_(2.0)
    path = str(tmp_path / "rm.pt")
    save_lm(path, saved.lm, tok, TASK, {}, saved.state_dict())
    env = _env()
    batch = env.collect(env.make_policy({}), 6)
    model = _support(env, init=path, ensemble_size=3).make_reward_model(seed=0)
    assert model.trained and model.rounds == 0  # relabels before any label of this run
    c = _support(env)._columns(batch)
    args = (c["prompt"], c["prompt_mask"], c["responses"], c["resp_mask"])
    assert torch.allclose(model.score(*args), saved.eval().score(*args), atol=1e-5)
    with pytest.raises(MissingFileError, match="no reward model at"):
        RewardModelConfig(init=str(tmp_path / "missing.pt"))


def test_the_vector_ensemble_warm_starts_from_reward_from_labels_output(tmp_path):
    from rlarena.reward_ensemble import RewardModelTrainer, save_reward_ensemble

    first = RewardModelTrainer(5, RewardModelConfig(), seed=0)
    torch.nn.init.normal_(first.model.members[0].net[0].weight)
    save_reward_ensemble(str(tmp_path / "rm.pt"), first)
    warm = RewardModelTrainer(5, RewardModelConfig(init=str(tmp_path / "rm.pt")), seed=1)
    x = torch.randn(4, 5)
    assert warm.trained and torch.equal(warm.predict(x), first.predict(x))
    with pytest.raises(ConfigError, match="reads 5 features"):
        RewardModelTrainer(6, RewardModelConfig(init=str(tmp_path / "rm.pt")), seed=1)
