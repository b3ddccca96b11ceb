"""The method registry: method name -> the ``Method`` class that owns it.

Built-in methods (``actionformer``, ``i2net``, ``asl``, ``co2net``) register themselves when
``tal.methods`` is imported; a plug-in registers with ``@register_method`` from its own
module. A plug-in in another installed package is found through the entry-point group
``tal.methods`` (``[project.entry-points."tal.methods"] NAME = "package.module"``): the
registry imports those modules on first use, in every process (Ray workers included). The
config loader asks this registry which class validates a ``model:`` section, so a
registered method is also a valid ``model.name``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from tal.config import ModelConfig
    from tal.methods.base import Method

_METHODS: dict[str, type[Method]] = {}
M = TypeVar("M", bound="type[Method]")


def register_method(cls: M) -> M:
    """Class decorator: make ``cls`` the method named ``cls.name`` (its config class must
    fix ``name`` to the same value). Registering a name twice with another class is an error."""
    name = cls.name
    default = cls.config_class.model_fields["name"].default
    if default != name:
        raise ValueError(
            f"method {cls.__name__}: its config class {cls.config_class.__name__} must default "
            f"name to {name!r}, got {default!r}"
        )
    existing = _METHODS.get(name)
    if existing is not None and existing is not cls:
        raise ValueError(f"method {name!r} is already registered by {existing.__qualname__}")
    _METHODS[name] = cls
    return cls


ENTRY_POINT_GROUP = "tal.methods"
_loaded = False


def _load_builtins() -> None:
    """Import the built-in methods and the installed plug-ins (once)."""
    global _loaded
    import tal.methods  # noqa: F401  (registers the built-in methods)

    if _loaded:
        return
    _loaded = True
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        entry.load()  # the module registers its method with @register_method


def method_names() -> list[str]:
    """Names of every registered method, sorted."""
    _load_builtins()
    return sorted(_METHODS)


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name``; a ValueError lists the registered ones."""
    _load_builtins()
    try:
        return _METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown method {name!r}; registered methods: {', '.join(sorted(_METHODS))}"
        ) from None


def config_class(name: str) -> type[ModelConfig]:
    """The config class that validates a ``model:`` section with ``name``."""
    return get_method(name).config_class
