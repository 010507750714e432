"""One source for every hyper-parameter: the algorithms' Config dataclasses are Hydra's ``algo`` options, and
an env family's settings live in one file."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rlarena.bench.cli import main as rlarena
from rlarena.bench.configs import build_algo_config, load_config
from rlarena.registry import get_algorithm, list_algorithms

BUILTIN = ["a2c", "grpo", "ppo", "preference", "reinforce", "rloo", "trpo"]
TEXT_TASKS = ["arithmetic", "dialogue", "format", "strings"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", BUILTIN)
def test_algo_option_is_its_dataclass(name):
    composed = OmegaConf.to_container(load_config([f"algo={name}"]).algo)
    defaults = OmegaConf.to_container(OmegaConf.structured(get_algorithm(name).Config))
    assert composed == {**defaults, "name": name}
    assert set(BUILTIN) <= set(list_algorithms())


def test_inner_algorithm_gets_the_same_defaults_as_the_algorithm_alone():
    # The drift this design removes: algo=trpo and preference's inner TRPO annealed differently.
    alone = build_algo_config(load_config(["algo=trpo"]), explicit_keys=set())
    wrapped = build_algo_config(load_config(["algo=preference", "algo.inner=trpo"]), explicit_keys=set())
    assert dataclasses.asdict(wrapped._inner) == dataclasses.asdict(alone)
    assert alone.anneal_lr is False


def _family_algo_defaults() -> dict:
    return OmegaConf.to_container(load_config(["env=text/format"]).env.algo_defaults, resolve=True)


def test_text_family_settings_are_shared_by_every_task():
    first = None
    for task in TEXT_TASKS:
        env = load_config([f"env=text/{task}"]).env
        shared = OmegaConf.to_container(env.algo_defaults)  # unresolved: num_steps follows the task
        assert first is None or shared == first, task
        first = shared
        assert env.task == task


def test_text_family_settings_name_real_fields_and_change_something():
    configs = {name: get_algorithm(name).Config for name in BUILTIN}
    for key, value in _family_algo_defaults().items():
        owners = {n: c for n, c in configs.items() if key in c.__dataclass_fields__}
        assert owners, f"algo_defaults.{key} is a field of no algorithm (a typo, or a second name?)"
        defaults = {n: OmegaConf.to_container(OmegaConf.structured(c))[key] for n, c in owners.items()}
        assert any(d != value for d in defaults.values()), (
            f"algo_defaults.{key}={value} repeats every default"
        )


@pytest.mark.parametrize(
    "args, message",
    [
        (["env=text/format", "env.kl_beta=-1"], "env.kl_beta must be >= 0"),
        (["env=text/format", "env.max_new_tokens=abc"], "env.max_new_tokens: Value 'abc'"),
        (["env=text/format", "env.reward=nope"], "env.reward must be 'oracle' or 'rm'"),
        (["env=text/format", "env.sft_checkpoint=missing.pt"], "create it with `rlarena sft task=format`"),
        (["env=hopper", "env.max_episode_steps=0"], "env.max_episode_steps must be null or a positive"),
        (["algo.activation=x"], "Could not override 'algo.activation'"),
        (["algo.policy.activation=sigmoid"], "policy.activation must be tanh|relu|elu"),
        # What an algorithm asks of the environment is checked against it before anything is created.
        (
            ["algo=preference", "env=text/format", "env.sft_checkpoint=untrained", "algo.num_envs=6"],
            "4 responses per prompt do not divide a batch of 6",
        ),
        (["algo=preference", "algo.reward_model.init=nope.pt"], "no reward model at 'nope.pt'"),
    ],
)
def test_bad_env_or_algo_setting_is_one_paragraph_and_creates_nothing(args, message, tmp_path, capsys):
    code = rlarena(["train", f"outputs_root={tmp_path}/out", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("rlarena train: ") and message in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_the_reproduction_table_keeps_its_run_files_in_git():
    """The table is made in chunks over sessions: what a chunk finished must be committable (the top-level
    .gitignore leaves out every runs/ and leaderboard/ folder), and the large files must stay out."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    sweep_dir = OmegaConf.load(ROOT / "conf" / "experiment" / "reproduction.yaml").hydra.sweep.dir
    job = f"{sweep_dir}/ppo_hopper_s0"
    kept = [f"{job}/config.yaml", f"{job}/metrics.jsonl", f"{job}/summary.json", f"{job}/failed.json"]
    kept += [
        f"{Path(sweep_dir).parent}/leaderboard/report.html",
        f"{Path(sweep_dir).parent}/leaderboard/leaderboard.md",
    ]
    left_out = [f"{job}/checkpoint.pt", f"{job}/.lock", f"{job}/.hydra/config.yaml", f"{job}/train.log"]

    def ignored(path: str) -> bool:
        proc = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
        assert proc.returncode in (0, 1), f"git check-ignore failed on {path}"
        return proc.returncode == 0

    assert [p for p in kept if ignored(p)] == []
    assert [p for p in left_out if not ignored(p)] == []
