"""The three run configurations, side by side: ``SearchConfig`` (``nasp search``),
``TrainConfig`` (``nasp train``, CNN) and ``LMTrainConfig`` (``nasp train --task lm``).

Each resolves ``defaults < preset < config file < explicit options`` with ``resolve`` and a
resumed run's saved options with ``resolve_resume``, the same way for all three.
"""

from nasp.configs.base import RunConfig, read_run_config, resolve, resolve_resume, run_kind
from nasp.configs.search import SearchConfig
from nasp.configs.train_cnn import TrainConfig
from nasp.configs.train_lm import LMTrainConfig

# (command, task) -> configuration class
CONFIGS: dict[tuple[str, str], type[RunConfig]] = {
    ("search", "cnn"): SearchConfig,
    ("search", "lm"): SearchConfig,
    ("train", "cnn"): TrainConfig,
    ("train", "lm"): LMTrainConfig,
}

__all__ = ["CONFIGS", "LMTrainConfig", "RunConfig", "SearchConfig", "TrainConfig",
           "read_run_config", "resolve", "resolve_resume", "run_kind"]
