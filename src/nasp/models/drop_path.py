"""Drop-path (DARTS's regulariser for long training), shared by the evaluation networks.

In a module of its own so that the CNN and NAS-Bench-201 networks both reach it without
importing each other (``nasp.models.cnn`` builds the benchmark's network for nb201 genotypes).
"""

from __future__ import annotations

import torch


def drop_path(x: torch.Tensor, drop_prob: float | torch.Tensor) -> torch.Tensor:
    """Zero whole samples of one edge's output with probability ``drop_prob`` and rescale the
    kept ones, so the expected output is unchanged (DARTS's regulariser for long training).

    A compiled network gets ``drop_prob`` as a 0-dim tensor, an input of its graph: a float
    would be a constant of the graph, and the value that rises every epoch would recompile
    the network every epoch."""
    keep = 1.0 - drop_prob
    if isinstance(keep, torch.Tensor):
        mask = (torch.rand(x.shape[0], 1, 1, 1, device=x.device) < keep).to(x.dtype)
    else:
        mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask.div_(keep)


def drops(training: bool, drop_prob: float | torch.Tensor) -> bool:
    """Whether a cell applies drop-path: in training, with a positive probability; always with
    a tensor probability (a compiled network; at 0 the mask keeps everything)."""
    return training and (isinstance(drop_prob, torch.Tensor) or drop_prob > 0.0)
