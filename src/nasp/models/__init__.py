"""Evaluation networks: what a genotype becomes when it is trained from scratch.

``nasp.models.cnn`` builds image classifiers from CNN genotypes; ``nasp.models.rnn`` (imported
on its own, it is only needed for language models) builds recurrent language models.
"""

from nasp.models.cnn import (
    AuxiliaryHead,
    EvalCell,
    EvalCNN,
    build_eval_model,
    count_flops,
    count_params,
    drop_path,
    reduction_layers,
)

__all__ = [
    "AuxiliaryHead",
    "EvalCNN",
    "EvalCell",
    "build_eval_model",
    "count_flops",
    "count_params",
    "drop_path",
    "reduction_layers",
]
