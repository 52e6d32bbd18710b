"""The method registry: built-in methods, methods that installed packages declare under the entry-point
group ``capsan_bench.methods``, and methods loaded from a user's Python file (``--method-file``).

A built-in method is one file, ``methods/<name>.py``, whose class carries ``@register``: importing
``bench.methods`` imports every module of the package (``import_package``), so nothing else lists the built-ins;
``method_names()``, ``--methods``, ``bench list methods`` and the tests that cover every method take them from
here.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import warnings
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path

from bench.errors import BenchError
from bench.methods.base import Method

ENTRY_POINT_GROUP = "capsan_bench.methods"

_REGISTRY: dict[str, type[Method]] = {}
_entry_points_loaded = False


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not (inspect.isclass(cls) and issubclass(cls, Method)) or not cls.name:
        raise TypeError(f"{cls!r} must subclass bench.methods.Method and set a non-empty 'name'")
    known = _REGISTRY.get(cls.name)
    if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
        raise BenchError(f"method name '{cls.name}' is taken by {known.__module__}.{known.__qualname__}; rename yours")
    _REGISTRY[cls.name] = cls
    return cls


def import_package(package: str, path: Iterable[str]) -> list[str]:
    """Import every module of ``package`` (found in the folders ``path``, its ``__path__``) in name order, and
    return their names. A module that defines a ``@register`` class registers it as it is imported (a built-in
    method); any other (a base class, networks, helpers) is only imported, as the methods import it anyway.
    A name starting with ``_`` is left out."""
    names = sorted(info.name for info in pkgutil.iter_modules(path) if not info.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names


def built_in_names() -> list[str]:
    """The registered methods that ``bench.methods`` itself defines (no plug-in, no ``--method-file``), sorted."""
    return sorted(name for name, cls in _REGISTRY.items() if cls.__module__.startswith(f"{__package__}."))


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            register(ep.load())
        except Exception as exc:  # a broken plug-in must not break the suite
            warnings.warn(f"skipping method entry point '{ep.name}' ({ep.value}): {exc}", stacklevel=2)


def method_names() -> list[str]:
    _load_entry_points()
    return sorted(_REGISTRY)


def get_method(name: str) -> type[Method]:
    _load_entry_points()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise BenchError(f"unknown method '{name}'; valid names: {', '.join(sorted(_REGISTRY))}") from None


def load_method_file(path: str | Path) -> list[str]:
    """Import a user's Python file and register every Method subclass it defines; return their names."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"method file {path} does not exist; give the path of a .py file")
    module_name = f"bench_user_method_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise BenchError(f"cannot import method file {path}: {type(exc).__name__}: {exc}") from exc
    names = []
    for obj in vars(module).values():
        if inspect.isclass(obj) and issubclass(obj, Method) and obj.__module__ == module_name and obj.name:
            if inspect.isabstract(obj):
                raise BenchError(f"method '{obj.name}' in {path} lacks fit or predict_proba; define both")
            register(obj)
            names.append(obj.name)
    if not names:
        raise BenchError(f"method file {path} defines no Method subclass with a 'name'; see the README example")
    return names
