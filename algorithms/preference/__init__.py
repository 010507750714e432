"""Deep RL from human preferences (Christiano et al. 2017): the ``preference`` algorithm and its parts.

* ``algorithm.py``: :class:`PreferenceLearning` (registered as ``algo=preference``), the wrapper around any
  on-policy algorithm, and its :class:`PreferenceConfig`;
* the reward model comes from the environment (``rlarena/preferences.py``'s contract): on vector
  observations the MLP ensemble of ``rlarena/reward_ensemble.py`` (:class:`RewardEnsemble`, trained by
  :class:`RewardModelTrainer`), on text the transformer of ``envs/text/preferences.py``;
* ``labelers.py``: who answers the queries (a synthetic oracle, or a person through the label store).

Importing the package registers the algorithm.
"""

from rlarena.reward_ensemble import (
    PreferenceDataset,
    RewardEnsemble,
    RewardModelConfig,
    RewardModelTrainer,
    evaluate_reward_model,
    load_reward_ensemble,
    padded_features,
    save_reward_ensemble,
)

from .algorithm import (
    PreferenceConfig,
    PreferenceLearning,
    build_inner_config,
    label_target,
    sub_config,
)
from .labelers import HumanLabeler, Labeler, LabelerConfig, SyntheticLabeler, make_labeler

__all__ = [
    "HumanLabeler",
    "Labeler",
    "LabelerConfig",
    "PreferenceConfig",
    "PreferenceDataset",
    "PreferenceLearning",
    "RewardEnsemble",
    "RewardModelConfig",
    "RewardModelTrainer",
    "SyntheticLabeler",
    "build_inner_config",
    "evaluate_reward_model",
    "label_target",
    "load_reward_ensemble",
    "make_labeler",
    "padded_features",
    "save_reward_ensemble",
    "sub_config",
]
