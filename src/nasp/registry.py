"""A small name -> object registry, so every lookup failure names the valid choices."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from nasp.errors import NaspError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> object map with decorator registration and actionable lookup errors."""

    def __init__(self, kind: str, option: str | None = None) -> None:
        self.kind = kind
        self.option = option
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; used bare or as a decorator."""
        if obj is not None:
            self._add(name, obj)
            return obj

        def deco(o: T) -> T:
            self._add(name, o)
            return o

        return deco

    def _add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            how = f"use {self.option} with one of" if self.option else "choose one of"
            raise NaspError(
                f"unknown {self.kind} {name!r}", f"{how}: {', '.join(sorted(self._items))}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def names(self) -> list[str]:
        return sorted(self._items)
