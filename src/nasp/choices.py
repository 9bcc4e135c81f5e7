"""Choices in your own network, by their public names: ``Choice``, ``InputChoice`` and ``use``
(run a model with choices under one architecture). ``nasp.Choice`` and ``nasp.InputChoice``
are the same classes; the mechanism lives in ``nasp.supernet.choices``."""

from nasp.supernet.choices import Choice, InputChoice, use

__all__ = ["Choice", "InputChoice", "use"]
