"""Text-generation environments: the InstructGPT pipeline (demonstrations, SFT, reward model, KL-penalized RL)
offline, on a small character-level transformer. Importing the package registers ``text/<task>`` for every
task of :mod:`.tasks` (``text/arithmetic``, ``text/strings``, ``text/format``, ``text/dialogue``).
"""

from . import env  # noqa: F401  (registers the environments)
