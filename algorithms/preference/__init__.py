"""Deep RL from human preferences (Christiano et al. 2017): the ``preference`` algorithm and its parts.

* ``algorithm.py``: :class:`PreferenceLearning` (registered as ``algo=preference``), the wrapper around any
  on-policy algorithm, and its :class:`PreferenceConfig`;
* ``reward_model.py``: the reward model it learns, an MLP ensemble over segment features
  (:class:`RewardEnsemble`, trained by :class:`RewardModelTrainer`);
* ``labelers.py``: who answers the queries (a synthetic oracle, or a person through the label store).

Importing the package registers the algorithm.
"""

from .algorithm import (
    PreferenceConfig,
    PreferenceLearning,
    build_inner_config,
    cut_segments,
    label_target,
    sub_config,
)
from .labelers import HumanLabeler, Labeler, LabelerConfig, SyntheticLabeler, make_labeler
from .reward_model import (
    PreferenceDataset,
    RewardEnsemble,
    RewardModelConfig,
    RewardModelTrainer,
    evaluate_reward_model,
    load_reward_ensemble,
    padded_features,
    save_reward_ensemble,
)

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
    "cut_segments",
    "evaluate_reward_model",
    "label_target",
    "load_reward_ensemble",
    "make_labeler",
    "padded_features",
    "save_reward_ensemble",
    "sub_config",
]
