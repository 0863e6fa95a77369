"""A loopback stand-in for an OpenAI-compatible chat endpoint (third-party SaaS we cannot reach).

It speaks the real ``/v1/chat/completions`` wire format so the real ``ChatOpenAI`` client is
exercised, records every request, and answers from a script: a tool call when tools are offered
and the user text matches a rule, otherwise a text answer that lists the context it was given.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request


@dataclass(kw_only=True)
class ChatDouble:
    """The scripted model: ``rules`` map a regex on the user's text to (tool name, arguments)."""

    rules: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        """The HTTP app serving ``POST /v1/chat/completions``."""
        api = FastAPI()

        @api.post("/v1/chat/completions")
        async def completions(request: Request) -> dict[str, Any]:
            body = await request.json()
            self.requests.append({"body": body, "headers": dict(request.headers)})
            return self._reply(body)

        return api

    def _reply(self, body: dict[str, Any]) -> dict[str, Any]:
        user_text = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
        message: dict[str, Any] = {"role": "assistant", "content": None}
        offered = {t["function"]["name"] for t in body.get("tools", [])}
        for pattern, tool, args in self.rules:
            if offered and re.search(pattern, user_text, re.IGNORECASE):  # a model may name any tool
                message["tool_calls"] = [
                    {
                        "id": f"call_{uuid.uuid4().hex[:12]}",
                        "type": "function",
                        "function": {"name": tool, "arguments": json.dumps(args)},
                    }
                ]
                break
        else:
            system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
            titles = re.findall(r"^\[(.+)\]$", system, re.MULTILINE)
            message["content"] = f"Answer drawn from: {', '.join(titles) or 'nothing'}."
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "double"),
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if "tool_calls" in message else "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
