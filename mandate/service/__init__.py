"""Service: the FastAPI app, settings, the CLI and the embedded dev stack."""

from mandate.service.app import create_app
from mandate.service.devstack import DevStack
from mandate.service.settings import DevSettings, IssuerSettings, Settings

__all__ = ["DevSettings", "DevStack", "IssuerSettings", "Settings", "create_app"]
