"""Step 3 of InstructGPT as an rlarena environment: the prompt is the state, each response token an action.

An episode is one response: it ends at EOS or after ``num_steps`` tokens. The reward of token ``t`` is
``-kl_beta * (log pi(a_t|s_t) - log pi_ref(a_t|s_t))`` (the per-token KL penalty to the frozen SFT model,
as in InstructGPT and TRL), plus, at the last token only, the response's score: the task scorer
(``reward: oracle``) or the normalized reward model (``reward: rm``).

``collect`` returns a time-major ``RolloutBatch(layout="sequence")`` over response tokens: ``[T, N]`` with
``T = num_steps`` (the maximum response length) and ``N`` prompts; ``mask`` marks real tokens, and
``dones = 1`` from each sequence's last real token on, so GAE over the padded batch equals GAE over each
response alone. Responses end for good (no bootstrap): ``last_value = 0``. With
``EnvSettings.responses_per_prompt = k`` the ``N`` columns answer ``N / k`` prompts, ``k`` consecutive
columns each (reward from preferences compares them: envs/text/preferences.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from rlarena.errors import ConfigError, MissingFileError, RunFileError
from rlarena.preferences import PreferenceSettings
from rlarena.registry import register_env
from rlarena.rollout import Environment, EnvSettings, Policy, RolloutBatch

from .model import ModelConfig, TransformerLM, generate, response_mask
from .policy import TextPolicy
from .preferences import ResponsePairs
from .reward_model import TextRewardModel, load_text_reward_model
from .sft import default_path, load_checkpoint, load_lm
from .tasks import TASKS, get_task, load_split
from .tokenizer import CharTokenizer

UNTRAINED = "untrained"  # sft_checkpoint value: a tiny random LM instead of a checkpoint

DEFAULT_KL_BETA = {"oracle": 0.02, "rm": 0.2}
# Keys of the env config that belong to other parts of the program (the training loop, leaderboards).
_PASSTHROUGH = {"algo_defaults", "run_defaults", "smoke_overrides", "random_score", "reference_score", "id"}


@dataclass
class TextEnvConfig:
    name: str = "text/arithmetic"
    task: str = "arithmetic"
    reward: str = "oracle"  # oracle: the task scorer; rm: the reward model of `rlarena reward-model`
    # KL penalty coefficient (initial, if adaptive). null: 0.02 with the oracle (scores in [0, 1], as in
    # InstructGPT) and 0.2 with a reward model (env.reward=rm, or the one algo=preference learns), whose
    # scores have std 1: at 0.02 PPO over-optimizes it, and 0.2 keeps more of the oracle's gain than 0.1 on
    # format and dialogue, on both CPU code paths measured (docs/text.md).
    kl_beta: float | None = None
    kl_target: float | None = None  # adaptive controller (Ziegler et al. 2019): target KL per response
    kl_horizon: int = 10_000  # responses over which the adaptive controller moves beta by ~e^(+-0.2)
    sft_checkpoint: str | None = None  # default: artifacts/text/<task>/sft.pt; "untrained": tiny random LM
    rm_checkpoint: str | None = None  # default: artifacts/text/<task>/rm.pt
    hf_path: str | None = None  # a local Hugging Face causal LM to use instead of the SFT checkpoint (hf.py)
    # With hf_path: the top decoder layers (and the final norm) that RL trains; the rest, embeddings
    # included, stay as loaded (a 135M model on a CPU: the backward pass and Adam's state stay small).
    # null: every parameter trains.
    hf_train_layers: int | None = None
    max_new_tokens: int = 24  # evaluation response limit (training uses the algorithm's num_steps)
    temperature: float = 1.0  # sampling temperature of the non-deterministic evaluation
    eval_seed: int = 12345  # sampled evaluations reuse this seed, so two evaluations are comparable
    log_samples: int = 4  # prompt/response samples in evaluation results and in the run directory
    critic_lr_scale: float = 30.0  # the value head learns this much faster than the LM (see TextPolicy)
    # Evaluations also score the generalization split (tasks.py: words/values no training prompt has):
    # ood_score, ood_exact, ood_score_ci_low/high beside the held-out score. False: skip it (it doubles the
    # evaluation's generation time).
    ood_eval: bool = True

    def __post_init__(self) -> None:
        get_task(self.task)
        if self.reward not in ("oracle", "rm"):
            raise ConfigError(f"env.reward must be 'oracle' or 'rm', got {self.reward!r}")
        self.kl_beta_chosen = self.kl_beta is not None  # else the default follows the reward's scale
        if self.kl_beta is None:
            self.kl_beta = DEFAULT_KL_BETA[self.reward]
        if not (self.kl_beta >= 0 and math.isfinite(self.kl_beta)):
            raise ConfigError(f"env.kl_beta must be >= 0, got {self.kl_beta}")
        if self.hf_train_layers is not None and self.hf_train_layers < 1:
            raise ConfigError(f"env.hf_train_layers must be >= 1 or null (all), got {self.hf_train_layers}")
        if self.kl_target is not None and self.kl_target <= 0:
            raise ConfigError(f"env.kl_target must be > 0 or null, got {self.kl_target}")
        if min(self.max_new_tokens, self.kl_horizon, self.temperature, self.critic_lr_scale) <= 0:
            raise ConfigError(
                "env.max_new_tokens, kl_horizon, temperature and critic_lr_scale must be positive"
            )
        self.sft_checkpoint = self.sft_checkpoint or default_path(self.task, "sft")
        self.rm_checkpoint = self.rm_checkpoint or default_path(self.task, "rm")

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> TextEnvConfig:
        """The config from the ``env`` section: unknown keys, wrong types and bad values raise ConfigError."""
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        known = {f.name for f in fields(cls)}
        unknown = set(cfg) - known - _PASSTHROUGH
        if unknown:
            raise ConfigError(f"unknown text env keys {sorted(unknown)}; known: {sorted(known)}")
        try:  # OmegaConf checks each value against the field's type, and names the key
            typed = OmegaConf.merge(OmegaConf.structured(cls), {k: v for k, v in cfg.items() if k in known})
            values = OmegaConf.to_container(typed)
        except OmegaConfBaseException as exc:
            key, msg = getattr(exc, "full_key", None), getattr(exc, "msg", None) or str(exc)
            raise ConfigError(f"env.{key}: {msg.strip().splitlines()[0]}" if key else msg) from None
        return cls(**values)


class TextEnv(Environment):
    def __init__(self, cfg: TextEnvConfig, settings: EnvSettings) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.num_envs = settings.num_envs
        self.device = torch.device(settings.device)
        self.run_dir = settings.run_dir
        self.task = get_task(cfg.task)
        self.train_records = load_split(cfg.task, "train")
        self.test_records = load_split(cfg.task, "test")
        self.ood_records = load_split(cfg.task, "ood") if cfg.ood_eval else []
        check_settings(settings)
        self.responses_per_prompt = settings.responses_per_prompt
        self.kl_in_reward = settings.kl_in_reward
        if not self.kl_in_reward and cfg.kl_target is not None:
            raise ConfigError(
                "env.kl_target adapts the KL penalty in the reward, but this algorithm puts the KL in its "
                "loss (algo.kl_coef): leave env.kl_target null"
            )
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.kl_beta = cfg.kl_beta
        self.num_collects = 0
        # Fail now, before any training, if a pipeline step has not been run.
        self.reference, self.tokenizer = self._load_lm()
        self.reference.to(self.device).eval().requires_grad_(False)
        self.reward_model = None
        if cfg.reward == "rm":
            self.reward_model = load_reward_model(cfg.rm_checkpoint, cfg.task).to(self.device).eval()
            self.reward_model.requires_grad_(False)
        self.observation_space = None  # token ids of any length: no fixed space
        self.action_space = self.tokenizer.vocab_size

    # ---- policy -----------------------------------------------------------------------------------------

    def _load_lm(self) -> tuple[torch.nn.Module, Any]:
        if self.cfg.hf_path is not None:
            from .hf import load_hf_lm  # transformers is an optional extra

            return load_hf_lm(self.cfg.hf_path)
        if self.cfg.sft_checkpoint == UNTRAINED:
            # A tiny random LM: runs the whole env without any pipeline step (smoke tests, debugging). The
            # fixed seed makes the policy and the frozen reference start identical, as after SFT.
            tok = CharTokenizer()
            with torch.random.fork_rng():
                torch.manual_seed(0)
                return TransformerLM(ModelConfig(tok.vocab_size, d_model=32, n_layer=1, n_head=2)), tok
        lm, tok, _ = load_lm(self.cfg.sft_checkpoint, self.cfg.task)
        return lm, tok

    def preference_support(self, settings: PreferenceSettings) -> ResponsePairs:
        """Responses to one prompt compared in pairs, a transformer reward model: envs/text/preferences.py."""
        if self.responses_per_prompt < 2:
            raise ConfigError("reward from preferences on text needs >= 2 responses per prompt")
        if not self.cfg.kl_beta_chosen:  # the learned reward model has unit std, as env.reward=rm's
            self.kl_beta = DEFAULT_KL_BETA["rm"]
        return ResponsePairs(
            self.reference, self.tokenizer, self.responses_per_prompt, self.name, settings, self.cfg.task
        )

    def make_policy(self, policy_cfg: Any) -> Policy:
        """The SFT model (a trainable copy of the frozen reference) with a value head.

        ``policy_cfg.hidden_sizes`` and ``activation`` shape the value head; the LM comes from the checkpoint.
        """
        get = policy_cfg.get if isinstance(policy_cfg, dict) else lambda k, d: getattr(policy_cfg, k, d)
        lm, _ = self._load_lm()
        if self.cfg.hf_path is not None and self.cfg.hf_train_layers is not None:
            from .hf import trainable_top_layers

            trainable_top_layers(lm, self.cfg.hf_train_layers)
        hidden, activation = list(get("hidden_sizes", [64, 64])), get("activation", "tanh")
        return TextPolicy(lm, hidden, activation, self.cfg.critic_lr_scale).to(self.device)

    # ---- rollouts ---------------------------------------------------------------------------------------

    @torch.no_grad()
    def _score_responses(
        self,
        policy: TextPolicy,
        records: list[dict],
        num_tokens: int,
        generator: torch.Generator,
        greedy: bool = False,
        temperature: float = 1.0,
    ) -> dict[str, Any]:
        """Generate, then score every response token in one teacher-forced pass of policy and reference."""
        tok = self.tokenizer
        prompt, prompt_mask = (x.to(self.device) for x in tok.encode_prompts([r["prompt"] for r in records]))
        responses = generate(
            policy.lm, prompt, prompt_mask, num_tokens, tok.eos_id, tok.pad_id, generator, greedy, temperature
        )
        mask = response_mask(responses, tok.eos_id)
        logits, values = policy.forward_responses(prompt, prompt_mask, responses)
        ref_logits = _reference_logits(self.reference, prompt, prompt_mask, responses)
        logprobs, ref_logprobs = logits.log_softmax(-1), ref_logits.log_softmax(-1)
        logp = logprobs.gather(-1, responses[..., None]).squeeze(-1)
        ref_logp = ref_logprobs.gather(-1, responses[..., None]).squeeze(-1)
        texts = [tok.decode(r) for r in responses]
        scores = torch.tensor([self.task.score(r, t) for r, t in zip(records, texts)], device=self.device)
        out = {
            "prompt": prompt,
            "prompt_mask": prompt_mask,
            "responses": responses,
            "mask": mask,
            "logp": logp,
            "values": values,
            # k1 = log pi - log pi_ref of the sampled token: InstructGPT's per-token penalty.
            "ref_logp": ref_logp,
            "kl_sampled": (logp - ref_logp) * mask,
            # The exact KL of the next-token distributions, summed over the vocabulary (for reporting).
            "kl_exact": (logprobs.exp() * (logprobs - ref_logprobs)).sum(-1) * mask,
            "texts": texts,
            "scores": scores,
        }
        rm = self.reward_model
        if rm is not None and self.cfg.hf_path is None and not rm.reads_text:  # the same characters
            out["rm_scores"] = rm.score(prompt, prompt_mask, responses, mask)
        elif rm is not None:  # another tokenizer on either side: the reward model reads the decoded text
            ended = (responses == tok.eos_id).any(1).tolist()
            out["rm_scores"] = rm.score_texts([r["prompt"] for r in records], texts, ended, rm.tokenizer)
        return out

    def collect(self, policy: Policy, num_steps: int) -> RolloutBatch:
        if not isinstance(policy, TextPolicy):
            raise TypeError(
                f"text environments need the policy from env.make_policy, got {type(policy).__name__}"
            )
        k = self.responses_per_prompt  # consecutive columns answer the same prompt
        idx = torch.randint(len(self.train_records), (self.num_envs // k,), generator=self.generator).tolist()
        records = [self.train_records[i] for i in idx for _ in range(k)]
        # Temperature 1: the tokens must come from the very distribution the algorithm optimizes.
        r = self._score_responses(policy, records, num_steps, self.generator)
        mask, n = r["mask"], len(records)
        lengths = mask.sum(1)  # every response has at least one token
        last = lengths - 1
        final = r["rm_scores"] if self.reward_model is not None else r["scores"]
        # The per-token KL penalty, unless the algorithm puts the KL in its loss (it reads ref_logp).
        rewards = -self.kl_beta * r["kl_sampled"] if self.kl_in_reward else torch.zeros_like(r["kl_sampled"])
        rewards[torch.arange(n, device=self.device), last] += final
        steps = torch.arange(mask.shape[1], device=self.device)
        dones = (steps[None, :] >= last[:, None]).float()  # the last real token and the padding after it

        seq_kl = r["kl_sampled"].sum(1)
        self._adapt_kl(float(seq_kl.mean()), n)
        self.num_collects += 1
        t = num_steps
        info: dict[str, Any] = {
            "episode_returns": r["scores"].tolist(),  # the true task score of each response
            "task_scores": r["scores"],  # the same, for reward from preferences (envs/text/preferences.py)
            "final_rewards": final,  # what was added at each response's last token
            "stat/score": float(r["scores"].mean()),
            "stat/kl": float(seq_kl.mean()),
            "stat/kl_exact": float(r["kl_exact"].sum(1).mean()),
            "stat/kl_beta": self.kl_beta if self.kl_in_reward else 0.0,  # 0: the KL is in the loss
            "stat/response_length": float(lengths.float().mean()),
            "stat/no_eos_fraction": float(
                (r["responses"] == self.tokenizer.eos_id).sum(1).eq(0).float().mean()
            ),
            "samples": self._samples(records, r),
            "responses_per_prompt": k,  # columns per prompt: group-baseline algorithms check it
        }
        if self.reward_model is not None:
            info["stat/rm_score"] = float(r["rm_scores"].mean())
        return RolloutBatch(
            obs={
                "prompt": r["prompt"][None].expand(t, *r["prompt"].shape),
                "prompt_mask": r["prompt_mask"][None].expand(t, *r["prompt_mask"].shape),
            },
            actions=r["responses"].T.contiguous(),
            logp=r["logp"].T.contiguous(),
            values=r["values"].T.contiguous(),
            rewards=rewards.T.contiguous(),
            dones=dones.T.contiguous(),
            last_value=torch.zeros(n, device=self.device),
            mask=mask.T.contiguous(),
            layout="sequence",
            ref_logp=r["ref_logp"].T.contiguous(),
            info=info,
        )

    def _adapt_kl(self, kl: float, n: int) -> None:
        if self.cfg.kl_target is None:
            return
        error = min(max(kl / self.cfg.kl_target - 1.0, -0.2), 0.2)
        self.kl_beta *= 1.0 + error * n / self.cfg.kl_horizon

    def _samples(self, records: list[dict], r: dict[str, Any]) -> list[str]:
        return [
            f"{rec['prompt']}{text!r} -> score {float(s):.2f}"
            for rec, text, s in list(zip(records, r["texts"], r["scores"]))[: self.cfg.log_samples]
        ]

    # ---- evaluation -------------------------------------------------------------------------------------

    def evaluate(self, policy: Policy, episodes: int, deterministic: bool = True) -> dict[str, Any]:
        """Score responses to the first ``episodes`` held-out prompts (the same prompts every time), and, with
        ``ood_eval``, to the first ``episodes`` prompts of the generalization split (``ood_*`` keys)."""
        if not isinstance(policy, TextPolicy):
            raise TypeError(
                f"text environments need the policy from env.make_policy, got {type(policy).__name__}"
            )
        records = [self.test_records[i % len(self.test_records)] for i in range(episodes)]
        generator = torch.Generator().manual_seed(self.cfg.eval_seed)
        parts = self._score_in_chunks(policy, records, generator, deterministic)
        scores = torch.cat([p["scores"] for p in parts])
        lengths = torch.cat([p["mask"].sum(1) for p in parts]).float()
        low, high = _bootstrap_ci(scores)
        result: dict[str, Any] = {
            "returns": scores.tolist(),
            "score": float(scores.mean()),
            # 95% CI of the mean score over prompts (each with its one sampled or greedy response).
            "score_ci_low": low,
            "score_ci_high": high,
            "exact": float((scores == 1).float().mean()),
            "kl": float(torch.cat([p["kl_exact"].sum(1) for p in parts]).mean()),
            "kl_sampled": float(torch.cat([p["kl_sampled"].sum(1) for p in parts]).mean()),
            "length": float(lengths.mean()),
            "samples": self._samples(records, parts[0]),
        }
        if self.reward_model is not None:
            result["rm_score"] = float(torch.cat([p["rm_scores"] for p in parts]).mean())
        if self.cfg.ood_eval:
            result.update(self._evaluate_ood(policy, episodes, deterministic))
        self._write_samples(result, deterministic)
        return result

    def _score_in_chunks(
        self, policy: TextPolicy, records: list[dict], generator: torch.Generator, deterministic: bool
    ) -> list[dict[str, Any]]:
        """:meth:`_score_responses` over ``records``, 128 prompts at a time (bounded memory)."""
        return [
            self._score_responses(
                policy,
                records[i : i + 128],
                self.cfg.max_new_tokens,
                generator,
                deterministic,
                self.cfg.temperature,
            )
            for i in range(0, len(records), 128)
        ]

    def _evaluate_ood(self, policy: TextPolicy, episodes: int, deterministic: bool) -> dict[str, float]:
        """The generalization split, scored like the held-out prompts. It runs after them, with a generator
        of its own (``eval_seed + 1``), so the held-out figures are the same with ``ood_eval`` on or off."""
        records = [self.ood_records[i % len(self.ood_records)] for i in range(episodes)]
        generator = torch.Generator().manual_seed(self.cfg.eval_seed + 1)
        parts = self._score_in_chunks(policy, records, generator, deterministic)
        scores = torch.cat([p["scores"] for p in parts])
        low, high = _bootstrap_ci(scores)
        return {
            "ood_score": float(scores.mean()),
            "ood_score_ci_low": low,
            "ood_score_ci_high": high,
            "ood_exact": float((scores == 1).float().mean()),
        }

    def _write_samples(self, result: dict[str, Any], deterministic: bool) -> None:
        if self.run_dir is None:
            return
        line = {"collects": self.num_collects, "deterministic": deterministic, "score": result["score"]}
        line["samples"] = result["samples"]
        path = Path(self.run_dir) / "text_samples.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:  # one whole line per write
            f.write(json.dumps(line) + "\n")

    # ---- resume -----------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "kl_beta": self.kl_beta,
            "num_collects": self.num_collects,
        }

    @property
    def resumes_exactly(self) -> bool:
        return True  # an episode is one response: none spans two collects

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.kl_beta = float(state["kl_beta"])
        self.num_collects = int(state["num_collects"])


def _bootstrap_ci(scores: torch.Tensor, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean (fixed seed: the same scores give the same interval)."""
    if len(scores) < 2:
        return float("nan"), float("nan")
    generator = torch.Generator().manual_seed(seed)
    x = scores.detach().double().cpu()
    idx = torch.randint(len(x), (resamples, len(x)), generator=generator)
    means = x[idx].mean(1)
    return float(means.quantile(0.025)), float(means.quantile(0.975))


def _reference_logits(
    ref: torch.nn.Module, prompt: torch.Tensor, prompt_mask: torch.Tensor, responses: torch.Tensor
) -> torch.Tensor:
    t = responses.shape[1]
    tokens = torch.cat([prompt, responses], dim=1)
    key_mask = torch.cat([prompt_mask, torch.ones_like(responses, dtype=torch.bool)], dim=1)
    logits, _, _ = ref(tokens, key_mask, logits_to_keep=t + 1)
    return logits[:, :t]


def load_reward_model(path: str, task: str) -> TextRewardModel:
    """``env.rm_checkpoint``: a file is the character-level reward model (``rlarena reward-model``), a folder
    a Hugging Face one (``rlarena reward-model hf_path=...``, hf_reward_model.py)."""
    if not Path(path).is_dir():
        return load_text_reward_model(path, task)
    from .hf_reward_model import load_hf_reward_model  # transformers is an optional extra

    rm = load_hf_reward_model(path)
    if rm.task != task:
        raise ConfigError(f"{path!r} was trained on task {rm.task!r}, not {task!r}")
    return rm


def _hf_context(path: str, key: str) -> int | None:
    """The context length of the Hugging Face model saved in folder ``path`` (None if its config does not
    say); a path that holds no such model raises MissingFileError naming ``key``."""
    config = Path(path) / "config.json"
    if not config.is_file():
        what = "is not a folder" if not Path(path).is_dir() else "has no config.json"
        raise MissingFileError(
            f"{key}={path!r} {what}: not a saved Hugging Face model (SmolLM2-135M-Instruct: "
            "`make smollm2 && rlarena convert-smollm2 out=<folder>`)"
        )
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise RunFileError(f"{config}: not a readable model config ({exc})") from None
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def check_settings(settings: EnvSettings) -> None:
    """The batch must split into whole groups of responses to one prompt; the policy is the language model."""
    if settings.policy_from_algorithm:
        raise ConfigError(
            "this algorithm brings its own policy network for vector observations (a peer library's); "
            "text tasks need the language model as the policy: use one of rlarena's algorithms "
            "(ppo, grpo, rloo, ...)"
        )
    k, n = settings.responses_per_prompt, settings.num_envs
    if k < 1 or n % k:
        raise ConfigError(
            f"{k} responses per prompt do not divide a batch of {n} (algo.num_envs); choose a multiple"
        )


def make_text_env(env_cfg: dict[str, Any], settings: EnvSettings, task: str | None = None) -> TextEnv:
    """The registered factory: ``env_cfg`` is the ``env`` section (``conf/env/text/<task>.yaml``)."""
    cfg = dict(env_cfg)
    if task is not None:
        if cfg.get("task", task) != task:
            raise ConfigError(f"env text/{task} was given task={cfg['task']!r}")
        cfg["task"] = task
        cfg.setdefault("name", f"text/{task}")
    return TextEnv(TextEnvConfig.from_dict(cfg), settings)


def _register(task: str) -> None:
    def make(env_cfg: dict[str, Any], settings: EnvSettings) -> TextEnv:
        return make_text_env(env_cfg, settings, task)

    def validate(env_cfg: dict[str, Any]) -> None:  # before a run directory exists (bench/train.py)
        cfg = dict(env_cfg)
        if cfg.get("task", task) != task:
            raise ConfigError(f"env text/{task} was given task={cfg['task']!r}")
        text_cfg = TextEnvConfig.from_dict({**cfg, "task": task})
        # The pipeline steps' files, read (not only found) before a run directory exists.
        if text_cfg.hf_path is not None:
            context = _hf_context(text_cfg.hf_path, "env.hf_path")
        elif text_cfg.sft_checkpoint == UNTRAINED:
            context = ModelConfig().max_len
        else:
            sft = load_checkpoint(text_cfg.sft_checkpoint, "SFT", f"rlarena sft task={task}")
            context = int(sft["model_config"]["max_len"])
        if context is not None and text_cfg.max_new_tokens >= context:
            raise ConfigError(
                f"env.max_new_tokens={text_cfg.max_new_tokens} does not fit the model's context of {context} "
                "tokens (prompt + response)"
            )
        if text_cfg.reward == "rm":
            path = text_cfg.rm_checkpoint
            if Path(path).is_dir():  # a Hugging Face reward model (rlarena reward-model hf_path=...)
                from .hf_reward_model import HEAD_FILE as RM_HEAD_FILE

                if not (Path(path) / RM_HEAD_FILE).is_file():
                    raise MissingFileError(
                        f"env.rm_checkpoint={path!r} is a folder without {RM_HEAD_FILE}: not a reward model "
                        "that `rlarena reward-model hf_path=<SFT folder>` wrote"
                    )
                _hf_context(path, "env.rm_checkpoint")
            else:
                load_checkpoint(path, "reward-model", f"rlarena reward-model task={task}")

    make.__doc__ = f"text/{task}: {TASKS[task].description}"
    make.validate = validate  # type: ignore[attr-defined]
    make.validate_settings = check_settings  # type: ignore[attr-defined]
    register_env(f"text/{task}")(make)


for _task in TASKS:
    _register(_task)
