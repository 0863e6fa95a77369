"""The benchmark agent's model: the tests' loopback OpenAI-compatible double, with a three-turn script.

``Convert 100 EUR to USD`` → a ``lookup_rate`` call → a ``convert_currency`` call with the rate it
returned → ``100 EUR is 110.00 USD.``. Run as its own process (``python -m bench.peers.double
--port N``) so that the model's CPU is neither the client's nor a server's.
"""

from __future__ import annotations

import argparse
import json
import re
import uuid
from typing import Any

from tests.utils.openai_double import ChatDouble, _completion

QUESTION = "Convert {amount} EUR to USD"


def expected_answer(amount: int) -> str:
    """What the agent answers to :data:`QUESTION` (rate 1.1)."""
    return f"{amount} EUR is {amount * 1.1:.2f} USD."


class ConversionDouble(ChatDouble):
    """Looks the rate up, converts with it, answers with the converted amount."""

    def _reply(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body["messages"]
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        user_text = str(messages[last_user]["content"])
        tool_results = [m for m in messages[last_user:] if m["role"] == "tool"]
        match = re.search(r"convert (\d+) ([A-Z]{3}) to ([A-Z]{3})", user_text, re.IGNORECASE)
        if not match or not body.get("tools"):
            return super()._reply(body)
        amount, base, quote = int(match[1]), match[2].upper(), match[3].upper()
        if not tool_results:
            return _completion(body, _call("lookup_rate", {"base": base, "quote": quote}))
        if any(m.get("status") == "error" or str(m["content"]).startswith("{") for m in tool_results):
            return _completion(body, {"role": "assistant", "content": f"I could not convert it: {tool_results[-1]['content']}"})
        if len(tool_results) == 1:
            rate = float(tool_results[0]["content"])
            return _completion(body, _call("convert_currency", {"amount": amount, "rate": rate}))
        converted = tool_results[-1]["content"]
        return _completion(body, {"role": "assistant", "content": f"{amount} {base} is {converted} {quote}."})


def _call(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}],
    }


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m bench.peers.double")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    double = ConversionDouble()
    double.requests = _Forgetful()  # a long benchmark must not keep every request
    uvicorn.run(double.app(), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


class _Forgetful(list):  # type: ignore[type-arg]
    def append(self, item: Any) -> None:  # noqa: D102
        pass


if __name__ == "__main__":
    main()
