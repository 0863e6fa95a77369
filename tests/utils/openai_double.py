"""A loopback stand-in for an OpenAI-compatible chat endpoint (third-party SaaS we cannot reach).

It speaks the real ``/v1/chat/completions`` wire format so the real ``ChatOpenAI`` client is
exercised, records every request, and answers from a script: a tool call when tools are offered
and the user text matches a rule, otherwise a text answer that lists the context it was given.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse


async def _hold(request: Request, seconds: float) -> None:
    """Wait ``seconds``, or until the client went away (a cancelled run's call ends with it)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline and not await request.is_disconnected():
        await asyncio.sleep(min(0.05, seconds))


@dataclass(kw_only=True)
class ChatDouble:
    """The scripted model: ``rules`` map a regex on the user's text to (tool name, arguments)."""

    rules: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    delays: dict[str, float] = field(default_factory=lambda: {"take your time": 10.0})
    """Marker → seconds: a request whose text contains a marker is answered that much later (to
    cancel runs mid-flight, or to keep them in flight while a replica dies)."""

    def app(self) -> FastAPI:
        """The HTTP app serving ``POST /v1/chat/completions``."""
        api = FastAPI()

        @api.post("/v1/chat/completions", response_model=None)
        async def completions(request: Request) -> dict[str, Any] | StreamingResponse:
            body = await request.json()
            self.requests.append({"body": body, "headers": dict(request.headers)})
            text = json.dumps(body)
            await _hold(request, max((s for marker, s in self.delays.items() if marker in text), default=0.0))
            reply = self._reply(body)
            if body.get("stream"):
                return StreamingResponse(_as_chunks(reply), media_type="text/event-stream")
            return reply

        return api

    def _reply(self, body: dict[str, Any]) -> dict[str, Any]:
        user_text = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
        message: dict[str, Any] = {"role": "assistant", "content": None}
        offered = {t["function"]["name"] for t in body.get("tools", [])}
        last = body["messages"][-1] if body["messages"] else {}
        if last.get("role") == "tool":  # an agent loop: the tool answered, so the model reports it
            message["content"] = f"Tool result: {last.get('content')}"
            return _completion(body, message)
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
        return _completion(body, message)


def _completion(body: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    """A ``chat.completion`` carrying ``message``."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "double"),
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if "tool_calls" in message else "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


async def _as_chunks(reply: dict[str, Any]) -> Any:
    """The same reply as OpenAI's streaming wire format: ``chat.completion.chunk`` events, then [DONE]."""
    choice = reply["choices"][0]
    message = choice["message"]
    delta: dict[str, Any] = {"role": "assistant", "content": message.get("content") or ""}
    if "tool_calls" in message:
        delta["tool_calls"] = [{**call, "index": i} for i, call in enumerate(message["tool_calls"])]
    for part in (
        {"index": 0, "delta": delta, "finish_reason": None},
        {"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]},
    ):
        chunk = {key: reply[key] for key in ("id", "created", "model")} | {"object": "chat.completion.chunk", "choices": [part]}
        yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"
