"""One registry style for everything chosen by name (timm-like).

Sources, harmonization networks, MODNet backbones and foreground estimators are each a
:class:`Registry`: a factory registers itself under a name with a decorator, optionally
with keyword defaults, and ``create(name, **kwargs)`` calls it with those defaults
overridden by ``kwargs``::

    BACKBONES = Registry("MODNet backbone", modules=("modnet.backbones.resnet18",))

    @BACKBONES.register("resnet18")
    class ResNet18Backbone(nn.Module): ...

    BACKBONES.create("resnet18", in_channels=4)

``modules`` are imported the first time the registry is asked for a name, so the
registering modules (and what they import) load only when something is looked up; this
module itself imports nothing beyond the standard library and :mod:`matdata.errors`, so a
registry costs nothing at ``matdata --help``.  An unknown name raises ``error`` (a
:class:`~matdata.errors.MatdataError`) that lists the valid names.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from matdata.errors import ConfigError, MatdataError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> factories (classes, functions or callable configs), with keyword defaults."""

    def __init__(
        self,
        kind: str,
        *,
        modules: Sequence[str] = (),
        error: type[MatdataError] = ConfigError,
    ) -> None:
        self.kind = kind
        self._modules = tuple(modules)
        self._error = error
        self._entries: dict[str, tuple[T, dict[str, Any]]] = {}
        self._loaded = not self._modules
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ registration

    def register(self, name: str, obj: T | None = None, /, **defaults: Any) -> Any:
        """Register ``obj`` under ``name``; without ``obj``, a decorator that does so and
        returns its argument unchanged.  ``defaults`` are keyword arguments that
        :meth:`create` passes unless the caller overrides them."""

        def _add(target: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = (target, dict(defaults))
            return target

        return _add if obj is None else _add(obj)

    # ------------------------------------------------------------------------ lookup

    def _load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if not self._loaded:
                for module in self._modules:
                    importlib.import_module(module)
                self._loaded = True

    def names(self) -> list[str]:
        """Every registered name, in registration order."""
        self._load()
        return list(self._entries)

    def _entry(self, name: str) -> tuple[T, dict[str, Any]]:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise self._error(
                f"unknown {self.kind} {name!r}",
                hint=f"choose one of {', '.join(sorted(self._entries))}",
            ) from None

    def get(self, name: str) -> T:
        """The object registered as ``name`` (unknown names raise the registry's error)."""
        return self._entry(name)[0]

    def defaults(self, name: str) -> dict[str, Any]:
        """A copy of the keyword defaults ``name`` was registered with."""
        return dict(self._entry(name)[1])

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the factory registered as ``name`` with its defaults, updated by ``kwargs``."""
        factory, defaults = self._entry(name)
        if not callable(factory):
            raise TypeError(f"{self.kind} {name!r} is not callable")
        call: Callable[..., Any] = factory
        return call(*args, **{**defaults, **kwargs})

    # ----------------------------------------------------------------- mapping-like

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
