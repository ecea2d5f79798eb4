"""LLM rerank of dataset candidates: the teacher sees the task and the top candidates and votes for one or "none".

After prompt2model's DescriptionDatasetRetriever (several votes, majority wins, "none" can win), with two
changes: the votes are sampled at a real temperature (the original's 0.01 made them near-identical), and a
tie is broken by the dense ranking instead of by chance.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from p2m_engine.data.datasets import train_file
from p2m_engine.errors import LLMError
from p2m_engine.llm import LLM
from p2m_engine.runs import read_jsonl
from p2m_engine.types import DatasetCandidate, TaskSpec
from prompts import render

logger = logging.getLogger(__name__)

NONE = "none"
# Sampling temperature of the votes: above zero, so that several votes are several opinions.
VOTE_TEMPERATURE = 0.7
# Characters of a description / sample value shown to the LLM.
MAX_DESCRIPTION_CHARS = 300
MAX_ROW_CHARS = 160


@dataclass(frozen=True)
class Rerank:
    """The outcome of a rerank: the winner (None when "none" won), the vote counts and every ballot."""

    choice: str | None
    votes: dict[str, int]
    ballots: tuple[dict[str, str], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"choice": self.choice, "votes": dict(self.votes), "ballots": list(self.ballots)}


def sample_rows(candidate: DatasetCandidate, n: int = 2) -> list[dict[str, str]]:
    """The first n rows of a local candidate's training split (none for a Hub candidate not yet loaded)."""
    path = train_file(candidate)
    if candidate.source != "hub" or path is None:
        return []
    rows: list[dict[str, str]] = []
    for row in read_jsonl(path, skipped=[]):
        if isinstance(row.get("input"), str) and row.get("output") is not None:
            rows.append({"input": row["input"][:MAX_ROW_CHARS], "output": str(row["output"])[:MAX_ROW_CHARS]})
        if len(rows) >= n:
            break
    return rows


def tally(ballots: list[str], ranking: list[str]) -> str | None:
    """The majority of the ballots; a tie goes to the best-ranked dataset (a dataset beats "none" in a tie).

    Args:
        ballots: one name or "none" per vote (abstentions left out).
        ranking: candidate names, best dense score first.

    Returns:
        The winning name, or None when "none" won or there were no ballots.
    """
    if not ballots:
        return None
    counts = Counter(ballots)
    top = max(counts.values())
    leaders = [n for n, c in counts.items() if c == top]
    for name in ranking:
        if name in leaders:
            return name
    return None


def rerank_datasets(spec: TaskSpec, candidates: list[DatasetCandidate], llm: LLM, votes: int = 3) -> Rerank:
    """Ask the teacher LLM `votes` times which candidate fits the task best, and take the majority.

    Args:
        spec: the task (its instruction and demonstrations are shown).
        candidates: plausible candidates, best dense score first; names must be distinct.
        llm: the teacher LLM.
        votes: how many ballots to sample.

    Returns:
        The rerank. A ballot the LLM could not give is recorded as an abstention; when every ballot
        abstains the choice falls back to the dense ranking's first candidate.
    """
    names = [c.name for c in candidates]
    shown = [{"name": c.name, "description": " ".join(c.description.split())[:MAX_DESCRIPTION_CHARS],
              "labels": list(c.labels), "rows": sample_rows(c)} for c in candidates]
    messages = [{"role": "user", "content": render("rerank_datasets", instruction=spec.instruction,
                                                     examples=spec.examples, descriptions=spec.label_descriptions,
                                                     candidates=shown)}]
    schema = {"type": "object", "properties": {
        "dataset": {"type": "string", "enum": [*names, NONE]},
        "reason": {"type": "string", "maxLength": 160}}, "required": ["dataset", "reason"]}
    ballots: list[dict[str, str]] = []
    for i in range(votes):
        try:
            answer = llm.call_tool(messages, "choose_dataset", schema, temperature=VOTE_TEMPERATURE,
                                   max_tokens=120, variant=i)
        except LLMError as e:
            logger.info("rerank vote %d failed: %s", i + 1, e)
            ballots.append({"vote": "", "reason": f"no answer: {e}"[:200]})
            continue
        vote = str(answer.get("dataset", ""))
        # A name outside the candidates is a hallucination: it counts as "none" (as in prompt2model).
        ballots.append({"vote": vote if vote in names else NONE, "reason": str(answer.get("reason", ""))[:200]})
    cast = [b["vote"] for b in ballots if b["vote"]]
    counts = Counter(cast)
    choice = tally(cast, names) if cast else (names[0] if names else None)
    return Rerank(choice, {n: counts.get(n, 0) for n in [*names, NONE]}, tuple(ballots))
