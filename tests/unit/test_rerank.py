"""LLM rerank of dataset candidates, LLM label mapping checked against the demos, and the search that uses them."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any


from p2m_engine.errors import UnparseableAnswerError
from p2m_engine.data.labelmap import check_label_map, llm_label_map, rows_by_label
from p2m_engine.data.rerank import rerank_datasets, tally
from p2m_engine.data.probe import cross_gains
from p2m_engine.data.retrieval import find_dataset
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
        raise UnparseableAnswerError("The LLM gave no valid answer for choose_dataset after 3 tries (x).")

    result = rerank_datasets(SENTIMENT, [cand("a", 0.6), cand("b", 0.5)], FakeLLM(broken))
    assert result.choice == "a" and all(b["vote"] == "" and "no answer" in b["reason"] for b in result.ballots)


def inverted_hub(hub: Path) -> Path:
    """The sentiment hub plus a dataset about the task whose labels are the wrong way round."""
    sentiment_hub(hub)
    rows = [(t, "negative") for t in POS] + [(t, "positive") for t in NEG]
    write_dataset(hub, "inverted_reviews", "Movie review sentences labelled with their sentiment, positive or negative.",
                  ["positive", "negative"], rows)
    return hub


def test_search_probes_every_fitting_dataset_takes_those_near_the_best_and_never_asks_for_votes(tmp_path: Path) -> None:
    hub = inverted_hub(tmp_path / "hub")
    llm = voter(["none", "none", "none"])
    found = find_dataset(SENTIMENT, [hub], llm=llm, index_dir=tmp_path / "idx")
    by = {c.name: c for c in found.candidates}
    assert [c.name for c in found.taken] == ["movie_opinions", "film_reviews"] or \
        [c.name for c in found.taken] == ["film_reviews", "movie_opinions"]
    assert "taken (best probe)" in found.taken[0].reason and "taken (probe within" in found.taken[1].reason
    # The dataset whose labels contradict the demonstrations is plausible by its card, and refused by its probe.
    assert by["inverted_reviews"].plausible and "rejected: no better than chance" in by["inverted_reviews"].reason
    assert found.probes["inverted_reviews"]["gain"] < 0 < found.probes["film_reviews"]["gain"]
    assert found.probes["film_reviews"]["accuracy"] == 1.0
    # No LLM vote decides (the fake would have voted none): the same data whatever the seed or temperature.
    assert found.rerank is None and not [r for r in llm.requests if r["name"] == "choose_dataset"]
    assert not by["weather_reports"].plausible


def test_search_takes_nothing_when_no_probe_beats_chance(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    rows = [(t, "negative") for t in POS] + [(t, "positive") for t in NEG]
    write_dataset(hub, "inverted_reviews", "Movie review sentences labelled with their sentiment, positive or negative.",
                  ["positive", "negative"], rows)
    found = find_dataset(SENTIMENT, [hub], index_dir=tmp_path / "idx")
    assert found.chosen is None and found.taken == ()
    assert "no better than chance" in found.candidates[0].reason


def test_generation_search_takes_the_rerank_majority_and_records_votes(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    pairs = [("close the open file f", "f.close()"), ("sort list xs in place", "xs.sort()")]
    write_dataset(hub, "code_en", "English requests paired with the one line of Python code that does them.", None,
                  pairs, "text-generation")
    write_dataset(hub, "code_snippets", "Python one-line code snippets written for English requests.", None,
                  pairs[::-1], "text-generation")
    spec = TaskSpec("Write the Python code (a single line) that does what the request says.",
                    (Example("open file 'a.txt' for reading", "open('a.txt')"),), "generation")
    found = find_dataset(spec, [hub], llm=voter(["code_snippets", "code_en", "code_snippets"]), index_dir=tmp_path / "idx")
    by = {c.name: c for c in found.candidates}
    assert found.chosen is not None and found.chosen.name == "code_snippets"
    assert by["code_snippets"].votes == 2 and "taken (rerank: 2 of 3 votes)" in by["code_snippets"].reason
    assert "not tried: code_snippets was taken" in by["code_en"].reason
    none = find_dataset(spec, [hub], llm=voter(["none", "code_en", "none"]), index_dir=tmp_path / "idx")
    assert none.chosen is None and all("voted none" in c.reason for c in none.candidates if c.plausible)


def test_label_mapping_consistent_with_the_demos_is_accepted(tmp_path: Path) -> None:
    hub = sentiment_hub(tmp_path / "hub", labels=("1", "0"))
    llm = voter([], mapping={"1": "positive", "0": "negative"})
    found = find_dataset(SENTIMENT, [hub], llm=llm, index_dir=tmp_path / "idx")
    assert found.chosen is not None and {c.name for c in found.taken} == {"film_reviews", "movie_opinions"}
    assert all(c.label_map == {"1": "positive", "0": "negative"} for c in found.taken)
    assert "labels mapped by the LLM (consistent with the demonstrations" in found.chosen.reason
    record = found.label_mappings[0]
    assert record["dataset"] in {"film_reviews", "movie_opinions"} and record["check"]["accepted"] and record["check"]["margin"] > 0
    mapped = [r for r in llm.requests if r["name"] == "map_labels"]
    assert mapped[0]["schema"]["properties"]["1"]["enum"] == ["positive", "negative", "drop"]


def test_label_mapping_that_contradicts_the_demos_is_refused(tmp_path: Path) -> None:
    hub = sentiment_hub(tmp_path / "hub", labels=("1", "0"))
    llm = voter([], mapping={"1": "negative", "0": "positive"})
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


def test_tool_artifact_lists_candidates_probes_and_reasons(tmp_path: Path) -> None:
    from tools.context import ToolContext
    from tools.datasets import search_datasets as tool

    hub = sentiment_hub(tmp_path / "hub", labels=("1", "0"))
    llm = voter([], mapping={"1": "positive", "0": "negative"})
    run = Run.create(tmp_path / "runs", SENTIMENT.instruction)
    ctx = ToolContext(run=run, llm=llm, hub_dirs=[hub])  # type: ignore[arg-type]
    text, art = tool.func(SimpleNamespace(context=ctx, state={"task": SENTIMENT.to_dict()}))
    assert set(art["datasets"]) == {"movie_opinions", "film_reviews"} and art["label_map"] == {"1": "positive", "0": "negative"}
    assert set(art["probes"]) == {"movie_opinions", "film_reviews"} and art["rerank"] is None
    assert all(c["reason"] for c in art["candidates"]) and art["llm_calls"] == 2  # one label mapping per dataset
    rows = list(read_jsonl(run.path("data", "retrieved.jsonl")))
    dev = list(read_jsonl(run.path("data", "dev.jsonl")))
    # The two datasets hold the same 12 rows: kept once, most train the student, a real dev split is held out.
    assert {r["output"] for r in rows + dev} == {"positive", "negative"} and len(rows) + len(dev) == 12 and dev
    assert sum(art["retrieved_by_source"].values()) == len(rows)
    assert {r["source"] for r in rows} <= {"movie_opinions", "film_reviews"}
    assert {r["output"] for r in read_jsonl(run.path("data", "test.jsonl"))} <= {"positive", "negative"}
    assert set(json.loads(text)["datasets"]) == {"movie_opinions", "film_reviews"}


def test_probes_of_datasets_that_agree_predict_each_other_and_an_inverted_one_predicts_them_badly() -> None:
    rows = [Example(t, "positive") for t in POS] + [Example(t, "negative") for t in NEG]
    inverted = [Example(e.input, "negative" if e.output == "positive" else "positive") for e in rows]
    gains = cross_gains({"a": rows, "b": rows[::-1], "inverted": inverted, "one_label": rows[:3]}, SENTIMENT.labels)
    assert set(gains) == {"a", "b", "inverted"}  # a set with one label teaches nothing and is left out
    assert gains["a"]["b"] > 0 and gains["b"]["a"] > 0
    assert gains["a"]["inverted"] < 0 and gains["inverted"]["a"] < 0 and gains["inverted"]["b"] < 0


# Demonstrations a probe on plain review sentences gets wrong (sarcasm, a twist at the end).
HARD = TaskSpec(SENTIMENT.instruction,
                (Example("a wonderful, heartfelt movie, if you enjoy being bored", "negative"),
                 Example("i hated every minute of it, and i have never laughed so hard", "positive"),
                 Example("brilliant performances and a moving story, on paper", "negative")),
                "classification", ("positive", "negative"))


def test_datasets_that_agree_with_each_other_are_taken_though_three_hard_demos_go_against_them(tmp_path: Path) -> None:
    hub = sentiment_hub(tmp_path / "hub")
    found = find_dataset(HARD, [hub], index_dir=tmp_path / "idx")
    assert all(p["gain"] < 0 for p in found.probes.values())  # on the demos alone, no probe beats chance
    assert sorted(c.name for c in found.taken) == ["film_reviews", "movie_opinions"]
    for name in ("film_reviews", "movie_opinions"):
        assert found.probes[name]["others"] > 0 < found.probes[name]["gain_all"]
        assert "on the other dataset's rows" in next(c for c in found.candidates if c.name == name).reason


def test_a_dataset_of_inputs_unlike_the_demos_is_taken_only_when_nothing_else_is(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    long_rows = [(" ".join([t] * 12), "positive") for t in POS] + [(" ".join([t] * 12), "negative") for t in NEG]
    write_dataset(hub, "whole_reviews", "Whole movie reviews labelled with their sentiment, positive or negative.",
                  ["positive", "negative"], long_rows)
    alone = find_dataset(SENTIMENT, [hub], index_dir=tmp_path / "idx1")
    assert [c.name for c in alone.taken] == ["whole_reviews"]  # the only usable dataset: still taken
    sentiment_hub(hub)
    found = find_dataset(SENTIMENT, [hub], index_dir=tmp_path / "idx2")
    assert "whole_reviews" in found.probes and found.probes["whole_reviews"]["gain_all"] > 0
    assert sorted(c.name for c in found.taken) == ["film_reviews", "movie_opinions"]
    reason = next(c for c in found.candidates if c.name == "whole_reviews").reason
    assert "not taken: its inputs are unlike the demonstrations'" in reason
