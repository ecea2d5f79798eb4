"""Test doubles: the build's LLM client, scripted (generation answers and planner choices)."""

from __future__ import annotations

from typing import Any, Callable

from p2m_engine.llm import Usage


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


def choose(action: str, reason: str = "scripted", args: Any = None) -> tuple[Any, ...]:
    """A planner answer: the action and reason of a choose_action call, and its arguments when given."""
    return (action, reason) if args is None else (action, reason, args)


def planner(*choices: tuple[Any, ...]) -> FakeLLM:
    """The build's one LLM client, whose choose_action calls get `choices` in order (the planner asks through the
    teacher's client); every other call gets {}. `requests` holds what each call was offered."""
    script = iter(choices)

    def answer(messages: list[dict[str, Any]], name: str, i: int) -> dict[str, Any]:
        if name != "choose_action":
            return {}
        action, reason, *args = next(script)
        return {"action": action, "reason": reason, **({"args": args[0]} if args else {})}

    return FakeLLM(answer)


def offered(llm: FakeLLM) -> list[list[str]]:
    """The actions offered to the planner at each of its calls."""
    return [r["schema"]["properties"]["action"]["enum"] for r in llm.requests if r["name"] == "choose_action"]
