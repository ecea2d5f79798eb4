"""Ask the planner LLM for the next action among the allowed ones; validate its answer."""

from __future__ import annotations

from typing import Any

import openai
from langchain_core.messages import HumanMessage, SystemMessage

from agent.policy import ACTIONS
from p2m_engine.errors import LLMError
from prompts import render

CHOOSE = "choose_action"


def choice_schema(allowed: list[str]) -> dict[str, Any]:
    """The function the planner must call: an allowed action and a short reason."""
    return {
        "type": "function",
        "function": {
            "name": CHOOSE,
            "description": "Choose the next action of the build.",
            "parameters": {
                "type": "object",
                "properties": {
                    "action": {"type": "string", "enum": allowed},
                    # A cap on the reason keeps constrained decoding from running past max_tokens.
                    "reason": {"type": "string", "maxLength": 150},
                },
                "required": ["action", "reason"],
            },
        },
    }


def ask_planner(model: Any, instruction: str, facts: dict[str, Any], allowed: list[str]) -> tuple[str | None, str, dict[str, int]]:
    """Return (action or None when unusable, reason or the problem, token usage)."""
    bound = model.bind_tools([choice_schema(allowed)], tool_choice=CHOOSE)
    messages = [SystemMessage(render("planner_system", instruction=instruction, actions=ACTIONS)),
                HumanMessage(render("planner_state", facts=facts, allowed=allowed))]
    try:
        reply = bound.invoke(messages)
    except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
        raise LLMError(f"The planner LLM endpoint rejected the API key (HTTP {e.status_code}).") from None
    except (openai.OpenAIError, ValueError, LookupError) as e:
        # The service failed after the client's retries, or answered something LangChain cannot read (a cut
        # body raises ValueError, an empty `choices` IndexError): the rules take this step, and the trace says so.
        return None, f"the planner LLM failed: {type(e).__name__}", {"tokens_in": 0, "tokens_out": 0}
    usage = dict(getattr(reply, "usage_metadata", None) or {})
    tokens = {"tokens_in": int(usage.get("input_tokens", 0)), "tokens_out": int(usage.get("output_tokens", 0))}
    calls = [c for c in getattr(reply, "tool_calls", []) or [] if c.get("name") == CHOOSE]
    if not calls:
        return None, "the planner LLM called no choose_action", tokens
    args = calls[0].get("args") or {}
    action, reason = args.get("action"), str(args.get("reason", ""))[:300]
    if action not in allowed:
        return None, f"the planner LLM chose {action!r}, not one of {allowed}", tokens
    return action, reason, tokens
