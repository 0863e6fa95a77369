"""Service: the FastAPI app, settings, the CLI and the embedded dev stack.

The names are imported on first use (PEP 562), so that ``mandate --help`` and the other light
commands, which import ``mandate.service.cli``, do not load the whole app.
"""

from __future__ import annotations

from importlib import import_module as _import_module
from typing import TYPE_CHECKING as _TYPE_CHECKING

if _TYPE_CHECKING:
    from mandate.service.app import create_app
    from mandate.service.devstack import DevStack
    from mandate.service.settings import DevSettings, IssuerSettings, Settings

__all__ = ["DevSettings", "DevStack", "IssuerSettings", "Settings", "create_app"]

_HOMES = {
    "DevSettings": "mandate.service.settings",
    "DevStack": "mandate.service.devstack",
    "IssuerSettings": "mandate.service.settings",
    "Settings": "mandate.service.settings",
    "create_app": "mandate.service.app",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_import_module(home), name)
    globals()[name] = value
    return value
