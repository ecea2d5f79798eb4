"""LLM rerank of dataset candidates, LLM label mapping checked against the demos, and the search that uses them."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any


from p2m_engine.errors import LLMError
from p2m_engine.labelmap import check_label_map, llm_label_map, rows_by_label
from p2m_engine.rerank import rerank_datasets, tally
from p2m_engine.retrieval import find_dataset
from p2m_engine.runs import Run, read_jsonl
from p2m_engine.types import DatasetCandidate, Example, TaskSpec
from tests.fakes import FakeLLM

SENTIMENT = TaskSpec(
    "Classify the sentiment of this movie review sentence as positive or negative.",
    (Example("a gorgeous, moving film with superb acting", "positive"),
     Example("a dull, tedious mess that wastes its cast", "negative"),
     Example("one of the most delightful comedies of the year", "positive")),
    "classification", ("positive", "negative"))

POS = ["a wonderful, heartfelt movie", "brilliant performances and a moving story", "i loved every minute of it",
       "a delightful and charming film", "funny, warm and beautifully shot", "an absolute triumph of a movie"]
NEG = ["a boring and pointless movie", "terrible acting and a dreadful script", "i hated every minute of it",
       "a tedious, lifeless film", "clumsy, dull and far too long", "an utter failure of a movie"]


def write_dataset(hub: Path, name: str, description: str, labels: list[str] | None, rows: list[tuple[str, str]],
                  task_type: str = "classification") -> Path:
    folder = hub / name
    folder.mkdir(parents=True)
    info = {"name": name, "title": name, "description": description, "task_type": task_type, "labels": labels}
    (folder / "dataset_info.json").write_text(json.dumps(info))
    with (folder / "train.jsonl").open("w") as f:
        for inp, out in rows:
            f.write(json.dumps({"input": inp, "output": out}) + "\n")
    with (folder / "dev.jsonl").open("w") as f:
        for inp, out in rows[:2]:
            f.write(json.dumps({"input": inp + " (held out)", "output": out}) + "\n")
    return folder


def sentiment_hub(hub: Path, labels: tuple[str, str] = ("positive", "negative")) -> Path:
    """Two movie-review sentiment datasets (labels named `labels`) and an unrelated one."""
    rows = [(t, labels[0]) for t in POS] + [(t, labels[1]) for t in NEG]
    write_dataset(hub, "film_reviews", "Movie review sentences labelled with their sentiment, positive or negative.",
                  list(labels), rows)
    write_dataset(hub, "movie_opinions", "Sentiment of sentences from film reviews: positive or negative opinion.",
                  list(labels), rows[::-1])
    write_dataset(hub, "weather_reports", "Hourly temperature and rainfall readings from weather stations.",
                  ["rain", "dry"], [("12mm rain at noon", "rain"), ("sunny, 24 degrees", "dry")])
    return hub


def voter(votes: list[str], mapping: dict[str, str] | None = None) -> FakeLLM:
    """A fake teacher: rerank ballots from `votes` in turn, label mappings from `mapping`."""
    ballots = iter(votes)

    def answer(messages: list[dict[str, Any]], name: str, n: int) -> dict[str, Any]:
        if name == "choose_dataset":
            return {"dataset": next(ballots), "reason": f"ballot {n}"}
        assert name == "map_labels" and mapping is not None
        return dict(mapping)

    return FakeLLM(answer)


def cand(name: str, score: float) -> DatasetCandidate:
    return DatasetCandidate(name, f"/nonexistent/{name}", f"about {name}", score, ("positive", "negative"),
                            "classification", None, "", plausible=True, fits=True)


def test_rerank_majority_wins_and_every_ballot_is_kept() -> None:
    llm = voter(["b", "a", "b"])
    result = rerank_datasets(SENTIMENT, [cand("a", 0.6), cand("b", 0.5), cand("c", 0.4)], llm, votes=3)
    assert result.choice == "b"
    assert result.votes == {"a": 1, "b": 2, "c": 0, "none": 0}
    assert [b["vote"] for b in result.ballots] == ["b", "a", "b"] and result.ballots[0]["reason"] == "ballot 1"
    req = llm.requests[0]
    assert req["schema"]["properties"]["dataset"]["enum"] == ["a", "b", "c", "none"]
    assert all(r["temperature"] > 0 for r in llm.requests)
    assert [r["variant"] for r in llm.requests] == [0, 1, 2]
    prompt = req["messages"][0]["content"]
    assert "about b" in prompt and SENTIMENT.examples[0].input in prompt


def test_rerank_ties_follow_the_dense_ranking_and_unknown_names_count_as_none() -> None:
    assert tally(["c", "b", "none"], ["b", "c"]) == "b"
    assert tally(["none", "c"], ["b", "c"]) == "c"
    assert tally(["none", "none", "b"], ["b", "c"]) is None
    result = rerank_datasets(SENTIMENT, [cand("a", 0.6), cand("b", 0.5)], voter(["zzz", "made-up", "a"]))
    assert result.choice is None and result.votes["none"] == 2


def test_rerank_falls_back_to_dense_order_when_the_llm_never_answers() -> None:
    def broken(*_: Any) -> dict[str, Any]:
        raise LLMError("The LLM gave no valid answer for choose_dataset after 3 tries (x).")

    result = rerank_datasets(SENTIMENT, [cand("a", 0.6), cand("b", 0.5)], FakeLLM(broken))
    assert result.choice == "a" and all(b["vote"] == "" and "no answer" in b["reason"] for b in result.ballots)


def test_search_takes_the_rerank_majority_and_records_votes_and_reasons(tmp_path: Path) -> None:
    hub = sentiment_hub(tmp_path / "hub")
    found = find_dataset(SENTIMENT, [hub], llm=voter(["movie_opinions", "film_reviews", "movie_opinions"]),
                         index_dir=tmp_path / "idx")
    by = {c.name: c for c in found.candidates}
    assert found.chosen is not None and found.chosen.name == "movie_opinions"
    assert by["movie_opinions"].votes == 2 and "taken (rerank: 2 of 3 votes)" in by["movie_opinions"].reason
    assert by["film_reviews"].votes == 1 and "not tried: movie_opinions was taken" in by["film_reviews"].reason
    assert not by["weather_reports"].plausible and by["weather_reports"].votes == 0
    assert found.rerank is not None and [b["vote"] for b in found.rerank["ballots"]].count("movie_opinions") == 2


def test_search_takes_nothing_when_the_rerank_votes_none(tmp_path: Path) -> None:
    hub = sentiment_hub(tmp_path / "hub")
    found = find_dataset(SENTIMENT, [hub], llm=voter(["none", "film_reviews", "none"]), index_dir=tmp_path / "idx")
    assert found.chosen is None
    plausible = [c for c in found.candidates if c.plausible]
    assert len(plausible) == 2 and all("rejected: the LLM rerank voted none" in c.reason for c in plausible)


def test_search_without_llm_takes_the_best_fitting_and_runs_no_rerank(tmp_path: Path) -> None:
    hub = sentiment_hub(tmp_path / "hub")
    found = find_dataset(SENTIMENT, [hub], index_dir=tmp_path / "idx")
    assert found.rerank is None and found.chosen is not None
    assert found.chosen.name == max((c for c in found.candidates if c.fits), key=lambda c: c.score).name
    assert "taken (best similarity that fits)" in found.chosen.reason


def test_label_mapping_consistent_with_the_demos_is_accepted(tmp_path: Path) -> None:
    hub = sentiment_hub(tmp_path / "hub", labels=("1", "0"))
    llm = voter(["film_reviews", "film_reviews", "movie_opinions"], mapping={"1": "positive", "0": "negative"})
    found = find_dataset(SENTIMENT, [hub], llm=llm, index_dir=tmp_path / "idx")
    assert found.chosen is not None and found.chosen.name == "film_reviews"
    assert found.chosen.label_map == {"1": "positive", "0": "negative"}
    assert "labels mapped by the LLM (consistent with the demonstrations" in found.chosen.reason
    record = found.label_mappings[0]
    assert record["dataset"] == "film_reviews" and record["check"]["accepted"] and record["check"]["margin"] > 0
    mapped = [r for r in llm.requests if r["name"] == "map_labels"]
    assert mapped[0]["schema"]["properties"]["1"]["enum"] == ["positive", "negative", "drop"]


def test_label_mapping_that_contradicts_the_demos_is_refused(tmp_path: Path) -> None:
    hub = sentiment_hub(tmp_path / "hub", labels=("1", "0"))
    llm = voter(["film_reviews"] * 3, mapping={"1": "negative", "0": "positive"})
    found = find_dataset(SENTIMENT, [hub], llm=llm, index_dir=tmp_path / "idx")
    assert found.chosen is None
    assert all(not m["check"]["accepted"] and "contradicts the demonstrations" in m["check"]["reason"]
               for m in found.label_mappings) and len(found.label_mappings) == 2
    assert all("rejected: LLM label mapping" in c.reason for c in found.candidates if c.plausible)


def test_label_check_refuses_mappings_that_leave_a_task_label_empty_or_invent_one(tmp_path: Path) -> None:
    rows = {"1": POS[:3], "0": NEG[:3]}
    assert not check_label_map(SENTIMENT, {"1": "positive", "0": "drop"}, rows).accepted
    assert "outside the task" in check_label_map(SENTIMENT, {"1": "positive", "0": "meh"}, rows).reason
    unchecked = check_label_map(TaskSpec("x", (), "classification", ("positive", "negative")),
                                {"1": "positive", "0": "negative"}, rows)
    assert unchecked.accepted and "unchecked" in unchecked.reason


def test_too_many_dataset_labels_are_not_sent_to_the_llm(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path, "many", "d", [str(i) for i in range(30)], [(f"row {i}", str(i)) for i in range(30)])
    llm = voter([], mapping={})
    mapping, record = llm_label_map(SENTIMENT, folder / "train.jsonl", llm)
    assert mapping is None and "more than 20" in record["check"]["reason"] and not llm.requests
    assert len(rows_by_label(folder / "train.jsonl")) == 21


def test_generation_task_takes_a_generation_dataset_without_labels(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    write_dataset(hub, "code_en", "English requests paired with the one line of Python code that does them.", None,
                  [("close the open file f", "f.close()"), ("sort list xs in place", "xs.sort()")], "text-generation")
    spec = TaskSpec("Write the Python code (a single line) that does what the request says.",
                    (Example("open file 'a.txt' for reading", "open('a.txt')"),), "generation")
    found = find_dataset(spec, [hub], index_dir=tmp_path / "idx")
    assert found.chosen is not None and found.chosen.name == "code_en" and found.chosen.label_map is None
    assert found.chosen.fits and "task type generation fits" in found.chosen.reason


def test_tool_artifact_lists_candidates_votes_and_reasons(tmp_path: Path) -> None:
    from tools.context import ToolContext
    from tools.datasets import search_datasets as tool

    hub = sentiment_hub(tmp_path / "hub", labels=("1", "0"))
    llm = voter(["movie_opinions", "movie_opinions", "film_reviews"], mapping={"1": "positive", "0": "negative"})
    run = Run.create(tmp_path / "runs", SENTIMENT.instruction)
    ctx = ToolContext(run=run, llm=llm, hub_dirs=[hub])  # type: ignore[arg-type]
    text, art = tool.func(SimpleNamespace(context=ctx, state={"task": SENTIMENT.to_dict()}))
    assert art["dataset"] == "movie_opinions" and art["label_map"] == {"1": "positive", "0": "negative"}
    by = {c["name"]: c for c in art["candidates"]}
    assert by["movie_opinions"]["votes"] == 2 and by["film_reviews"]["votes"] == 1
    assert all(c["reason"] for c in art["candidates"]) and art["rerank"]["votes"]["movie_opinions"] == 2
    assert art["label_mappings"][0]["check"]["accepted"] and art["llm_calls"] == 4
    rows = list(read_jsonl(run.path("data", "retrieved.jsonl")))
    dev = list(read_jsonl(run.path("data", "dev.jsonl")))
    # All 12 mapped rows are used: most train the student, a small real dev split is held out for decisions.
    assert {r["output"] for r in rows + dev} == {"positive", "negative"} and len(rows) + len(dev) == 12 and dev
    assert {r["output"] for r in read_jsonl(run.path("data", "test.jsonl"))} <= {"positive", "negative"}
    assert json.loads(text)["candidates"][0]["votes"] in (1, 2)
