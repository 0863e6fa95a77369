"""Argument schemas of the built-in project's tools, named in ``mandate.yaml`` (``args_schema``).

The demo APIs (``mandate.devstack.demo_apis``) accept the same bodies.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CreateTicketArgs", "SearchDocumentsArgs", "SendPaymentArgs"]


class SearchDocumentsArgs(BaseModel):
    """Search the documents the user may read."""

    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=2000)


class CreateTicketArgs(BaseModel):
    """Open a ticket in the tickets system."""

    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    priority: Literal["low", "normal", "high"] = "normal"


class SendPaymentArgs(BaseModel):
    """Send a payment from the company account."""

    model_config = ConfigDict(extra="forbid")
    amount: float = Field(gt=0, le=1_000_000)
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    recipient: str = Field(min_length=1, max_length=200)
    reference: str = Field(default="", max_length=200)
