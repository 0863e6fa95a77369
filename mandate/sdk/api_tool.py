"""A tool that is an HTTP API call: its arguments are POSTed to the API its policy names.

The URL is the tool's ``audience`` in ``mandate.yaml`` (the delegated token is bound to it), so the
policy file is the one place that says where the tool acts. Each attempt carries the call's
idempotency key, so a retry or a resumed run never has a second effect.
"""

from __future__ import annotations

from typing import Any

import httpx
from langchain_core.tools import BaseTool, StructuredTool
from opentelemetry import propagate
from pydantic import BaseModel

from mandate.sdk.credentials import delegated_credentials
from mandate.tools.errors import DownstreamError

__all__ = ["api_tool"]

API_TIMEOUT = 10.0


def api_tool(*, name: str, description: str, args_schema: type[BaseModel]) -> BaseTool:
    """A LangChain tool that POSTs its validated arguments to its API with the delegated token.

    Returns the API's JSON answer as the tool's result (the model sees it).
    """

    async def call(**args: Any) -> dict[str, Any]:
        credentials = delegated_credentials()
        if credentials.token is None:
            raise DownstreamError(f"Tool {name} has no audience in mandate.yaml, so no API to call.")
        headers = {
            "Authorization": f"Bearer {credentials.token.access_token}",
            "Idempotency-Key": credentials.idempotency_key,
        }
        propagate.inject(headers)  # the API's logs join this run's trace
        body = args_schema.model_validate(args).model_dump(mode="json")
        try:
            async with httpx.AsyncClient(timeout=API_TIMEOUT, follow_redirects=False) as client:
                response = await client.post(credentials.token.audience, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DownstreamError(f"{name}: the API could not be reached.") from exc
        if response.status_code >= 400:
            raise DownstreamError(f"{name}: the API answered {response.status_code}.")
        answer = response.json()
        return answer if isinstance(answer, dict) else {"result": answer}

    return StructuredTool.from_function(coroutine=call, name=name, description=description, args_schema=args_schema)
