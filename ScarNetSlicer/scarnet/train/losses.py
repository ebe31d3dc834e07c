"""ScarNet's loss: 0.5 · Focal Tversky + 0.4 · Dice + 0.1 · weighted cross-entropy (as in the paper).

Choices (the paper gives the mix, not every constant):

* Tversky α = 0.3 (false positives), β = 0.7 (false negatives): scar and MVO are small, and a
  missed scar costs a reader more than a slightly generous one; focal exponent γ = 0.75
  (Abraham & Khan 2019) puts weight on classes that are still poorly segmented.
* Soft Dice over the batch (``batch=True``): slices without scar would otherwise give 0/0.
* Cross-entropy class weights 0.25 / 1 / 1 / 2 / 3 (background, blood pool, myocardium,
  scar, MVO): roughly the square root of inverse frequency in heart crops, tempered so
  that MVO, absent in most slices, does not dominate.

The region losses exclude the background channel. MONAI provides the Tversky and Dice terms.
"""

from __future__ import annotations

import torch
from torch import nn

CLASS_WEIGHTS = (0.25, 1.0, 1.0, 2.0, 3.0)


class ScarNetLoss(nn.Module):
    def __init__(self, alpha: float = 0.3, beta: float = 0.7, gamma: float = 0.75,
                 weights: tuple[float, float, float] = (0.5, 0.4, 0.1),
                 class_weights: tuple[float, ...] = CLASS_WEIGHTS) -> None:
        super().__init__()
        from monai.losses import DiceLoss, TverskyLoss

        common = dict(include_background=False, to_onehot_y=True, softmax=True, batch=True)
        self.tversky = TverskyLoss(alpha=alpha, beta=beta, reduction="none", **common)
        self.dice = DiceLoss(**common)
        self.register_buffer("class_weights", torch.tensor(class_weights, dtype=torch.float32))
        self.gamma = gamma
        self.weights = weights

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits`` (B, C, H, W); ``target`` (B, H, W) integer labels."""
        logits = logits.float()
        target_c = target[:, None]
        focal_tversky = self.tversky(logits, target_c).clamp_min(0).pow(self.gamma).mean()
        dice = self.dice(logits, target_c)
        ce = nn.functional.cross_entropy(logits, target, weight=self.class_weights)
        a, b, c = self.weights
        return a * focal_tversky + b * dice + c * ce


def noise_consistency(clean_logits: torch.Tensor, noisy_logits: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel KL(p_clean ‖ p_noisy) of the class probabilities, the clean view held fixed.

    The clean view is the target (no gradient through it), so consistency is learned by the noisy
    view coming to agree, never by the clean prediction moving towards the noisy one.
    """
    target = torch.log_softmax(clean_logits.detach().float(), dim=1)
    prediction = torch.log_softmax(noisy_logits.float(), dim=1)
    return nn.functional.kl_div(prediction, target, log_target=True, reduction="none").sum(dim=1).mean()
