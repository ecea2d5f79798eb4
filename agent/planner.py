"""Ask the planner LLM for the next action among the allowed ones; validate its answer.

The planner is asked through the build's one LLM client (p2m_engine.llm.LLM), the teacher's: its calls obey the
same deadline and cache, count against `--budget llm_calls=`/`usd=`, and appear in the summary's usage and cost.
"""

from __future__ import annotations

from typing import Any, Sequence

from agent.policy import ACTIONS
from p2m_engine.errors import LLMAuthError, LLMError
from p2m_engine.llm import LLM
from prompts import render

CHOOSE = "choose_action"


# What each tool argument means, for the planner (the tools' own schemas give the names and types).
ARGUMENT_HELP = {
    "per_label": "examples per label (generate_examples: the total each label should have; "
                 "generate_targeted_examples: new ones per weak label)",
    "guidance": "a short text for the teacher's prompt: what the examples should be like",
    "epochs": "passes over the training data",
    "topics": "what generated examples should be about, one topic per batch (e.g. [\"parcel delivery\", "
              "\"bank accounts\"])",
    "base_model": "train from this loadable base model the model search found, by name (default: the one in use)",
    "labels": "generate only for these labels (default: every label short of its target)",
    "mix": "rows to take from each dataset, by name (only the usable datasets an earlier search found; "
           "a dataset left out is not taken)",
}


def tool_arguments(tools: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """Each tool's arguments as the tool itself declares them (name -> JSON schema), injected ones left out."""
    out = {}
    for t in tools:
        props = t.tool_call_schema.model_json_schema().get("properties", {})
        out[t.name] = {k: _json_type(v) for k, v in props.items()}
    return out


def _json_type(schema: dict[str, Any]) -> dict[str, Any]:
    """The type of an argument's schema, without its title and default (an optional one: its non-null type)."""
    for alt in schema.get("anyOf", ()):
        if alt.get("type") != "null":
            return _json_type(alt)
    out: dict[str, Any] = {"type": schema.get("type", "string")}
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = _json_type(schema["additionalProperties"])
    if isinstance(schema.get("items"), dict):
        out["items"] = _json_type(schema["items"])
    return out


def choice_schema(allowed: list[str], arguments: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The arguments of the function the planner must call: an allowed action, a short reason, and the
    arguments of the chosen action (those of the allowed tools, described; the policy checks them)."""
    properties: dict[str, Any] = {
        "action": {"type": "string", "enum": allowed},
        # A cap on the reason keeps constrained decoding from running past max_tokens.
        "reason": {"type": "string", "maxLength": 150},
    }
    offered = {name: {**schema, "description": ARGUMENT_HELP.get(name, name)}
               for action in allowed for name, schema in (arguments or {}).get(action, {}).items()}
    if offered:
        properties["args"] = {"type": "object", "properties": offered,
                              "description": "arguments of the chosen action (leave out for its defaults)"}
    return {"type": "object", "properties": properties, "required": ["action", "reason"]}


# The last tool results the planner reads, and the characters of each (a long result is cut: the context stays small).
LAST_RESULTS = 2
RESULT_CHARS = 400


def last_results(messages: Sequence[Any]) -> list[dict[str, str]]:
    """The last LAST_RESULTS tool results among `messages` (name and content, cut to RESULT_CHARS), oldest first."""
    found = [m for m in messages if getattr(m, "type", None) == "tool"][-LAST_RESULTS:]
    out = []
    for m in found:
        text = " ".join(str(m.content).split())
        out.append({"name": str(m.name), "content": text if len(text) <= RESULT_CHARS else text[:RESULT_CHARS] + " ..."})
    return out


def ask_planner(llm: LLM, instruction: str, facts: dict[str, Any], allowed: list[str],
                arguments: dict[str, dict[str, Any]] | None = None,
                observations: list[dict[str, str]] | None = None) -> tuple[str | None, str, dict[str, int], Any]:
    """Return (action or None when unusable, reason or the problem, the tokens of the call, the arguments it gave
    (unchecked; None when it gave none)). `observations`: the last tool results (`last_results`).

    Raises:
        LLMAuthError: the endpoint rejected the key (no fallback can help; the build stops with the message).
    """
    messages = [{"role": "system", "content": render("planner_system", instruction=instruction, actions=ACTIONS)},
                {"role": "user", "content": render("planner_state", facts=facts, allowed=allowed,
                                                   observations=observations or [])}]
    prompt0, completion0 = llm.usage.prompt_tokens, llm.usage.completion_tokens

    def tokens() -> dict[str, int]:
        return {"tokens_in": llm.usage.prompt_tokens - prompt0, "tokens_out": llm.usage.completion_tokens - completion0}

    try:
        args = llm.call_tool(messages, CHOOSE, choice_schema(allowed, arguments), temperature=0.0, max_tokens=256,
                             attempts=1)
    except LLMAuthError:
        raise
    except LLMError as e:
        # The service failed after the client's retries or deadline, or answered nothing usable (an action outside
        # the allowed ones fails the schema): the rules take this step, and the trace says so.
        return None, f"the planner LLM failed: {type(e).__name__}", tokens(), None
    action, reason = args.get("action"), str(args.get("reason", ""))[:300]
    if action not in allowed:
        return None, f"the planner LLM chose {action!r}, not one of {allowed}", tokens(), None
    return action, reason, tokens(), args.get("args")
