"""Search strategies. Each is one module that registers a ``Strategy`` subclass by name;
``build_strategy`` makes a run's strategy from its configuration."""

from nasp.strategies import asap as _asap  # noqa: F401
from nasp.strategies import darts as _darts  # noqa: F401
from nasp.strategies import fixed as _fixed  # noqa: F401
from nasp.strategies import nasp as _nasp  # noqa: F401
from nasp.strategies import pa as _pa  # noqa: F401
from nasp.strategies import random_search as _random_search  # noqa: F401
from nasp.strategies.base import (
    STRATEGIES,
    ArchContext,
    Strategy,
    StrategySetup,
    create_strategy,
    get_strategy,
)
from nasp.strategies.build import build_strategy, regularizer_costs

__all__ = ["STRATEGIES", "ArchContext", "Strategy", "StrategySetup", "build_strategy",
           "create_strategy", "get_strategy", "regularizer_costs"]
