"""The offline Hub catalog: indexed once, gated datasets refused, offline fetch fails with a reason and the
search falls back to the local hub; a loaded Hub dataset is written as a hub folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from p2m_engine.data import catalog, datasets
from p2m_engine.data.catalog import CatalogEntry, load_catalog, search_dataset_catalog, write_hub_folder
from p2m_engine.data.datasets import HubDataset, judge
from p2m_engine.errors import DatasetError
from p2m_engine.data.retrieval import find_dataset
from tests.unit.test_rerank import SENTIMENT, sentiment_hub, voter

SENTIMENT_METADATA = [{"config": "default", "task": "text-classification", "task_id": "binary_classification",
                       "col_mapping": {"review": "text", "label": "target"}}]


def write_catalog(folder: Path) -> Path:
    """A four-entry catalog in prompt2model's file formats."""
    folder.mkdir(parents=True)
    index = {
        "tiny/movie_sentiment": {"name": "tiny/movie_sentiment", "evaluation_metadata": SENTIMENT_METADATA,
                                 "description": "Sentences from movie reviews labelled with positive or negative sentiment."},
        "tiny/gated_reviews": {"name": "tiny/gated_reviews", "evaluation_metadata": None,
                               "description": "Film review sentiment: positive and negative movie reviews."},
        "tiny/weather": {"name": "tiny/weather", "evaluation_metadata": None,
                         "description": "Hourly temperature, wind and rainfall readings from weather stations."},
        "tiny/recipes": {"name": "tiny/recipes", "evaluation_metadata": None,
                         "description": "Cooking recipes with ingredients and steps."},
    }
    records = [
        {"id": "tiny/movie_sentiment", "gated": False,
         "tags": ["task_categories:text-classification", "language:en", "license:apache-2.0"]},
        {"id": "tiny/gated_reviews", "gated": "manual", "tags": ["task_categories:text-classification"]},
        {"id": "tiny/weather", "gated": False, "tags": ["task_categories:time-series-forecasting"]},
    ]
    (folder / catalog.INDEX_FILE).write_text(json.dumps(index))
    (folder / catalog.TAGS_FILE).write_text(json.dumps(records))
    return folder


def test_catalog_reads_tags_gating_and_metadata(tmp_path: Path) -> None:
    entries = {e.name: e for e in load_catalog(write_catalog(tmp_path / "cat"))}
    movie = entries["tiny/movie_sentiment"]
    assert movie.task_categories == ("text-classification",) and movie.languages == ("en",)
    assert movie.license == "apache-2.0" and not movie.gated and movie.task_types() == {"classification"}
    assert entries["tiny/gated_reviews"].gated and not entries["tiny/recipes"].task_categories
    with pytest.raises(DatasetError, match="has no hf_dataset_index.json"):
        load_catalog(tmp_path)


def test_catalog_search_ranks_by_meaning_refuses_gated_and_is_embedded_once(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_catalog(tmp_path / "cat")
    embedded: list[int] = []
    real = catalog.embed
    monkeypatch.setattr(catalog, "embed", lambda texts: embedded.append(len(texts)) or real(texts))
    monkeypatch.setattr(datasets, "embed", lambda texts: embedded.append(len(texts)) or real(texts))
    first = search_dataset_catalog(SENTIMENT, folder, k=4, index_dir=tmp_path / "idx")
    assert embedded == [4, 2]  # the four descriptions once, then the two queries (with and without demos)
    again = search_dataset_catalog(SENTIMENT, folder, k=4, index_dir=tmp_path / "idx")
    assert embedded == [4, 2, 2]  # reused: only the queries are embedded
    assert [c.name for c in first] == [c.name for c in again]
    by = {c.name: c for c in first}
    assert {first[0].name, first[1].name} == {"hf:tiny/movie_sentiment", "hf:tiny/gated_reviews"}
    assert by["hf:tiny/movie_sentiment"].plausible and by["hf:tiny/movie_sentiment"].source == "catalog"
    assert not by["hf:tiny/gated_reviews"].plausible and "gated" in by["hf:tiny/gated_reviews"].reason
    assert not by["hf:tiny/weather"].plausible


def test_offline_fetch_fails_with_a_reason_and_the_search_falls_back_to_the_local_hub(tmp_path: Path) -> None:
    hub = sentiment_hub(tmp_path / "hub")
    folder = write_catalog(tmp_path / "cat")
    llm = voter(["hf:tiny/movie_sentiment"] * 3)
    found = find_dataset(SENTIMENT, [hub], llm=llm, catalog_dir=folder, index_dir=tmp_path / "idx")
    by = {c.name: c for c in found.candidates}
    hub_cand = by["hf:tiny/movie_sentiment"]
    # Every plausible candidate is tried (no vote orders them): the Hub one fails to load and is rejected.
    assert "rejected: could not load tiny/movie_sentiment from the Hub" in hub_cand.reason
    assert "Offline" in hub_cand.reason or "offline" in hub_cand.reason
    assert found.chosen is not None and found.chosen.source == "hub"
    assert found.chosen.name in {"film_reviews", "movie_opinions"} and "taken" in found.chosen.reason
    assert "gated" in by["hf:tiny/gated_reviews"].reason
    assert not [r for r in llm.requests if r["name"] == "choose_dataset"]  # classification: probes decide


def test_fetch_refuses_gated_datasets_and_reuses_an_earlier_fetch(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="gated"):
        catalog.fetch(CatalogEntry("x/y", "d", gated=True), tmp_path)
    done = tmp_path / "x__y"
    done.mkdir()
    (done / "dataset_info.json").write_text("{}")
    (done / "train.jsonl").write_text("")
    assert catalog.fetch(CatalogEntry("x/y", "d"), tmp_path) == done  # no load_dataset call: offline-safe


def _splits(**columns: Any) -> dict[str, Any]:
    import datasets

    features = datasets.Features({"review": datasets.Value("string"), "stars": datasets.Value("int32"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    return {"train": datasets.Dataset.from_dict(columns, features=features),
            "test": datasets.Dataset.from_dict({k: v[:2] for k, v in columns.items()}, features=features)}


def test_loaded_hub_dataset_is_written_as_a_hub_folder_with_its_class_names(tmp_path: Path) -> None:
    splits = _splits(review=["great film", "awful film", "fine film"], stars=[5, 1, 3], label=[1, 0, -1])
    entry = CatalogEntry("tiny/movie_sentiment", "reviews", ("text-classification",), evaluation=tuple(SENTIMENT_METADATA))
    folder = write_hub_folder(entry, splits, tmp_path / "out")
    rows = [json.loads(x) for x in (folder / "train.jsonl").read_text().splitlines()]
    assert rows == [{"input": "great film", "output": "pos"}, {"input": "awful film", "output": "neg"}]
    info = json.loads((folder / "dataset_info.json").read_text())
    assert info["labels"] == ["neg", "pos"] and info["task_type"] == "classification"
    assert (folder / "dev.jsonl").is_file()
    cand = judge(SENTIMENT, HubDataset("hf:tiny/movie_sentiment", folder, info), 0.6, source="catalog")
    assert cand.plausible and not cand.fits  # "neg"/"pos" are not the task's label names: an LLM must map them


def test_hub_dataset_without_evaluation_metadata_uses_its_single_class_label_column(tmp_path: Path) -> None:
    splits = _splits(review=["great film"], stars=[5], label=[1])
    folder = write_hub_folder(CatalogEntry("a/b", "d"), splits, tmp_path / "out")
    assert json.loads((folder / "dataset_info.json").read_text())["columns"] == {"input": ["review"], "output": "label"}
    import datasets

    plain = {"train": datasets.Dataset.from_dict({"q": ["a"], "a": ["b"]})}
    with pytest.raises(DatasetError, match="cannot tell the input and output columns"):
        write_hub_folder(CatalogEntry("a/c", "d"), plain, tmp_path / "out2")
    with pytest.raises(DatasetError, match="no train split"):
        write_hub_folder(CatalogEntry("a/c", "d"), {"test": plain["train"]}, tmp_path / "out3")


def test_build_has_a_catalog_option_passed_to_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.build
    from agent.cli import cli

    seen: dict[str, Any] = {}
    monkeypatch.setattr(agent.build, "build_model",
                        lambda spec, prompt, **kw: seen.update(kw) or {"model_dir": "m", "met_target": True})
    prompt = 'Is this SMS spam or ham?\n\ninput="win cash"\noutput="spam"\n\ninput="see you"\noutput="ham"\n'
    bad = CliRunner().invoke(cli, ["build", prompt, "--catalog", str(tmp_path / "nope")])
    assert bad.exit_code != 0 and "--catalog" in bad.output
    ok = CliRunner().invoke(cli, ["build", prompt, "--catalog", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert seen["catalog"] == tmp_path


def test_an_interrupted_catalog_index_resumes_with_the_missing_entries_only(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_catalog(tmp_path / "cat")
    entries = load_catalog(folder)
    col = catalog._collection(entries[:1], folder, tmp_path / "idx")  # as if stopped after the first entry
    assert col.count() == 1
    embedded: list[int] = []
    real = catalog.embed
    monkeypatch.setattr(catalog, "embed", lambda texts: embedded.append(len(texts)) or real(texts))
    assert catalog._collection(entries, folder, tmp_path / "idx").count() == 4 and embedded == [3]
