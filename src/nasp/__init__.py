"""nasp: differentiable neural architecture search by proximal iterations (NASP), with DARTS,
PA, ASAP and random-search baselines on one code base."""

from nasp.errors import NaspError
from nasp.version import __version__

_API = ("search", "resume", "train", "search_or_continue")


def __getattr__(name: str):
    # the API pulls in torch and the data layer; import it on first use so `nasp --help` is quick
    if name in _API:
        from nasp import api

        return getattr(api, name)
    if name == "load":
        from nasp.export.load import load

        return load
    raise AttributeError(name)


__all__ = ["NaspError", "__version__", "load", *_API]
