"""A user's own gymnasium environment, registered when this module is imported: what gymnasium's
``module:Env-v0`` ids name: ``custom_env_module:rlarena-test/CustomPendulum-v0`` (test_corrupt_files.py)."""

from __future__ import annotations

import gymnasium as gym

ENV_ID = "rlarena-test/CustomPendulum-v0"


class CustomPendulum(gym.Wrapper):
    def __init__(self) -> None:
        super().__init__(gym.make("InvertedPendulum-v5"))


gym.register(ENV_ID, entry_point=CustomPendulum)
