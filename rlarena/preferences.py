"""Bradley-Terry preference model (Christiano et al. 2017), shared by every reward model in the project.

A segment's score is the sum of predicted rewards over it (MuJoCo) or the reward model's output for a whole
response (text). The probability that ``a`` is preferred to ``b`` is ``sigmoid(score_a - score_b)``; with the
paper's label-noise model a labeler answers uniformly at random with probability ``label_noise``:
``P(a > b) = (1 - label_noise) * sigmoid(score_a - score_b) + label_noise / 2``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def preference_probability(score_a: torch.Tensor, score_b: torch.Tensor, label_noise: float = 0.0) -> torch.Tensor:
    """P(segment a is preferred to segment b), elementwise."""
    if not 0.0 <= label_noise < 1.0:
        raise ValueError(f"label_noise must be in [0, 1), got {label_noise}")
    return (1.0 - label_noise) * torch.sigmoid(score_a - score_b) + 0.5 * label_noise


def bradley_terry_loss(
    score_a: torch.Tensor, score_b: torch.Tensor, target: torch.Tensor, label_noise: float = 0.0
) -> torch.Tensor:
    """Mean cross-entropy between the labels and the Bradley-Terry model.

    ``target`` is the labeled probability that ``a`` is preferred: 1 (a), 0 (b) or 0.5 (equally good).
    """
    if not (score_a.shape == score_b.shape == target.shape):
        raise ValueError(f"shapes differ: {tuple(score_a.shape)}, {tuple(score_b.shape)}, {tuple(target.shape)}")
    diff = score_a - score_b
    if label_noise == 0.0:  # exact, numerically stable path
        return F.binary_cross_entropy_with_logits(diff, target.to(diff.dtype))
    p = preference_probability(score_a, score_b, label_noise)
    return F.binary_cross_entropy(p, target.to(p.dtype))
