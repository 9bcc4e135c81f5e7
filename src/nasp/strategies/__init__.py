"""Search strategies. Each is one module that registers a ``Strategy`` subclass by name."""

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

__all__ = ["STRATEGIES", "ArchContext", "Strategy", "StrategySetup", "create_strategy",
           "get_strategy"]
