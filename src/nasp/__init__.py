"""nasp: differentiable neural architecture search by proximal iterations (NASP), with DARTS,
PA, ASAP and random-search baselines on one code base."""

__version__ = "0.1.0"

from nasp.errors import NaspError  # noqa: E402


def __getattr__(name: str):
    # the API pulls in torch and the data layer; import it on first use so `nasp --help` is quick
    if name in ("search", "resume"):
        from nasp import api

        return getattr(api, name)
    raise AttributeError(name)


__all__ = ["NaspError", "search", "resume", "__version__"]
