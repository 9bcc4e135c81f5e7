"""nasp: differentiable neural architecture search by proximal iterations (NASP), with DARTS,
PA, ASAP and random-search baselines on one code base."""

from nasp.errors import NaspError
from nasp.version import __version__

_API = ("search", "resume", "train", "search_or_continue")
# your own model as the search space: choices in any nn.Module, and its fixed network
_CHOICES = {"Choice": "nasp.choices", "InputChoice": "nasp.choices", "fix": "nasp.models.fixed"}


def __getattr__(name: str):
    # the API pulls in torch and the data layer; import it on first use so `nasp --help` is quick
    if name in _API:
        from nasp import api

        return getattr(api, name)
    if name == "load":
        from nasp.export.load import load

        return load
    if name == "choices":  # nasp.choices.use(model, arch) without importing it first
        import importlib

        return importlib.import_module("nasp.choices")
    if name in _CHOICES:
        import importlib

        return getattr(importlib.import_module(_CHOICES[name]), name)
    raise AttributeError(name)


__all__ = ["NaspError", "__version__", "load", *_API, *_CHOICES]
