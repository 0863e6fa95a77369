"""The audit checkpoint signer, from settings: shared by the service and the operator commands."""

from __future__ import annotations

from pathlib import Path

from mandate.audit import DEV_SIGNING_KEY_FILE, CheckpointSigner, load_signing_key
from mandate.runtime.settings import Settings

__all__ = ["audit_signer"]


def audit_signer(settings: Settings) -> CheckpointSigner:
    """The checkpoint signer from ``MANDATE_AUDIT_SIGNING_KEY``, or the dev key under ``data_dir``.

    Raises:
        AuditKeyError: No usable key (in prod a configured key is required).
    """
    configured = settings.audit_signing_key
    pem = configured.get_secret_value().encode() if configured else None
    dev_path = None if settings.env == "prod" else Path(settings.data_dir) / DEV_SIGNING_KEY_FILE
    return CheckpointSigner(load_signing_key(pem, dev_key_path=dev_path))
