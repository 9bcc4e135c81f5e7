"""Drop-path (DARTS's regulariser for long training), shared by the evaluation networks.

In a module of its own so that the CNN and NAS-Bench-201 networks both reach it without
importing each other (``nasp.models.cnn`` builds the benchmark's network for nb201 genotypes).
"""

from __future__ import annotations

import torch


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples of one edge's output with probability ``drop_prob`` and rescale the
    kept ones, so the expected output is unchanged (DARTS's regulariser for long training)."""
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask.div_(keep)
