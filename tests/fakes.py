"""Test doubles: a scripted planner chat model and a scripted generation LLM."""

from __future__ import annotations

from typing import Any, Callable

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult

from p2m_engine.llm import Usage


class ScriptedChatModel(GenericFakeChatModel):
    """Replays scripted AIMessages (text or tool calls) and records every input it saw.

    Raises StopIteration-derived errors when called more often than scripted.
    """

    seen: list[list[BaseMessage]] = []
    bound: list[dict[str, Any]] = []

    def bind_tools(self, tools: Any, **kwargs: Any) -> "ScriptedChatModel":  # type: ignore[override]
        self.bound.append({"tools": tools, **kwargs})
        return self

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        self.seen.append(messages)
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def choose(action: str, reason: str = "scripted", tokens: int = 0) -> AIMessage:
    """A planner answer: a choose_action call."""
    msg = AIMessage(content="", tool_calls=[{"name": "choose_action", "args": {"action": action, "reason": reason},
                                             "id": f"c-{action}"}])
    if tokens:
        msg.usage_metadata = {"input_tokens": tokens, "output_tokens": 1, "total_tokens": tokens + 1}
    return msg


def scripted(*messages: AIMessage) -> ScriptedChatModel:
    return ScriptedChatModel(messages=iter(messages), seen=[], bound=[])


class FakeLLM:
    """Stands in for p2m_engine.llm.LLM.call_tool: answers from a function of the messages.

    The signature is explicit, so an unexpected keyword from the caller fails the test.
    """

    def __init__(self, answer: Callable[[list[dict[str, Any]], str, int], dict[str, Any]], model: str = "fake-llm") -> None:
        self.answer = answer
        self.model = model
        self.usage = Usage()
        self.requests: list[dict[str, Any]] = []

    def call_tool(self, messages: list[dict[str, Any]], name: str, schema: dict[str, Any], *, temperature: float = 0.0,
                  max_tokens: int = 512, variant: int = 0, attempts: int = 3) -> dict[str, Any]:
        self.requests.append({"messages": messages, "name": name, "schema": schema, "temperature": temperature,
                              "variant": variant})
        self.usage.calls += 1
        self.usage.prompt_tokens += 10
        self.usage.completion_tokens += 5
        return self.answer(messages, name, len(self.requests))

    def cost_usd(self, prompt_tokens: int | None = None, completion_tokens: int | None = None) -> float | None:
        return 0.0  # a local model: as p2m_engine.llm.LLM reports a local server
