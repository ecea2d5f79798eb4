"""Dataset hub search with the packaged MiniLM and chromadb, label fit, and loading rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from p2m_engine.data.datasets import label_map, load_examples, scan_hub, search_hub
from p2m_engine.errors import DatasetError
from p2m_engine.task import parse_task
from tests.conftest import DEMO_HUB, SHARED_DATA


def test_demo_hub_finds_the_matching_dataset_and_rejects_the_other(tmp_path: Path) -> None:
    spec = parse_task((DEMO_HUB.parents[0] / "sms_spam.txt").read_text())
    cands = search_hub(spec, [DEMO_HUB], index_dir=tmp_path / "idx")
    assert cands[0].name == "sms_spam" and cands[0].label_map == {"ham": "ham", "spam": "spam"}
    other = next(c for c in cands if c.name == "imdb_sentences")
    assert other.label_map is None and other.score < cands[0].score


def test_index_is_built_once_and_reused(tmp_path: Path) -> None:
    spec = parse_task((DEMO_HUB.parents[0] / "sms_spam.txt").read_text())
    first = search_hub(spec, [DEMO_HUB], index_dir=tmp_path / "idx")
    files = sorted(p.name for p in (tmp_path / "idx").rglob("*"))
    second = search_hub(spec, [DEMO_HUB], index_dir=tmp_path / "idx")
    assert [c.name for c in first] == [c.name for c in second]
    assert sorted(p.name for p in (tmp_path / "idx").rglob("*")) == files


SENTIMENT_SETS = {"sst2", "mr_polarity", "cr_polarity", "imdb", "imdb_sentences"}
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="shared/data not present")


def _hub_without(tmp_path: Path, *names: str) -> Path:
    """A hub of symlinks to every shared dataset folder but `names`."""
    hub = tmp_path / "hub"
    hub.mkdir()
    for d in SHARED_DATA.iterdir():
        if d.name not in names and (d / "dataset_info.json").is_file():
            (hub / d.name).symlink_to(d)
    return hub


@needs_shared
def test_sentiment_task_ranks_a_sentiment_dataset_first(tmp_path: Path) -> None:
    spec = parse_task((SHARED_DATA / "sst2" / "prompt.txt").read_text())
    cands = search_hub(spec, [SHARED_DATA], index_dir=tmp_path / "idx")
    assert cands[0].name in SENTIMENT_SETS and cands[0].fits, [c.summary() for c in cands]
    assert cands[0].label_map == {"negative": "negative", "positive": "positive"}


@needs_shared
def test_sentiment_task_finds_a_sentiment_dataset_without_its_own(tmp_path: Path) -> None:
    hub = _hub_without(tmp_path, "sst2")
    spec = parse_task((SHARED_DATA / "sst2" / "prompt.txt").read_text())
    cands = search_hub(spec, [hub], index_dir=tmp_path / "idx")
    fitting = [c for c in cands if c.fits]
    assert fitting, [c.summary() for c in cands]
    assert fitting[0].name in SENTIMENT_SETS - {"sst2"}
    assert fitting[0].label_map == {"negative": "negative", "positive": "positive"}
    rows = load_examples(Path(fitting[0].path) / "train.jsonl", fitting[0].label_map, limit=200)
    assert {r.output for r in rows} == {"negative", "positive"}


@needs_shared
def test_generation_task_retrieves_a_related_generation_dataset(tmp_path: Path) -> None:
    spec = parse_task((SHARED_DATA / "mconala_ja" / "prompt.txt").read_text())
    assert spec.task_type == "generation"
    test_file = SHARED_DATA / "mconala_ja" / "dev.jsonl"
    cands = {c.name: c for c in search_hub(spec, [SHARED_DATA], index_dir=tmp_path / "idx", avoid=test_file)}
    conala = cands["conala_en"]
    assert conala.task_type == "text-generation" and conala.fits and conala.label_map is None
    assert conala.train_file.endswith("conala_en/train.jsonl")
    # Its only split is the test data: never trained on.
    own = cands["mconala_ja"]
    assert own.reason == "no train, dev or validation split besides the test data" and not own.fits and not own.train_file
    # Tested on other data, a dataset with a dev split only is trained on its dev split.
    other = {c.name: c for c in search_hub(spec, [SHARED_DATA], index_dir=tmp_path / "idx")}["mconala_ja"]
    assert other.fits and other.train_file.endswith("mconala_ja/dev.jsonl")


def test_a_dataset_of_another_task_type_does_not_fit(tmp_path: Path) -> None:
    shutil.copytree(DEMO_HUB / "sms_spam", tmp_path / "hub" / "sms_spam")
    spec = parse_task('Is this SMS spam? Write a short reply to the SMS.\n\ninput="win cash now"\n'
                      'output="no thanks, not interested"\n\ninput="are you coming tonight"\noutput="yes, see you at eight"\n')
    assert spec.task_type == "generation"
    cand = search_hub(spec, [tmp_path / "hub"], index_dir=tmp_path / "idx")[0]
    assert cand.score > 0.35  # about the same messages, but a classifier's data
    assert not cand.fits and not cand.plausible
    assert cand.reason == "task type classification differs from generation"


def test_label_map_needs_every_task_label() -> None:
    assert label_map(("pos", "neg"), ("NEG", "POS", "neutral")) == {"NEG": "neg", "POS": "pos"}
    assert label_map(("pos", "neg", "mixed"), ("neg", "pos")) is None


def test_broken_rows_are_skipped_and_reported(tmp_path: Path) -> None:
    p = tmp_path / "train.jsonl"
    p.write_text('{"input": "a", "output": "x"}\n{broken\n{"text": "no fields"}\n{"input": "b", "output": "y"}\n')
    skipped: list[str] = []
    rows = load_examples(p, {"x": "X", "y": "Y"}, skipped=skipped)
    assert [(r.input, r.output) for r in rows] == [("a", "X"), ("b", "Y")]
    assert skipped and ":2:" in skipped[0]


def test_dataset_without_usable_columns_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "train.jsonl"
    p.write_text('{"text": "a", "label": 1}\n')
    with pytest.raises(DatasetError, match="no usable rows"):
        load_examples(p)


def test_empty_or_missing_hub(tmp_path: Path) -> None:
    spec = parse_task((DEMO_HUB.parents[0] / "sms_spam.txt").read_text())
    assert search_hub(spec, [tmp_path]) == []
    with pytest.raises(DatasetError, match="does not exist"):
        scan_hub([tmp_path / "nope"])


def test_unreadable_dataset_info_is_skipped(tmp_path: Path) -> None:
    shutil.copytree(DEMO_HUB / "sms_spam", tmp_path / "good")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "dataset_info.json").write_text("{nope")
    assert [d.name for d in scan_hub([tmp_path])] == ["good"]
    assert json.loads((tmp_path / "good" / "dataset_info.json").read_text())["labels"] == ["ham", "spam"]


@needs_shared
def test_long_demonstrations_do_not_drown_the_instruction(tmp_path: Path) -> None:
    # News articles as demos fill the encoder's window: with them alone the query scored the news dataset 0.25
    # (below the plausibility bar); the instruction alone finds it. The card here has no copied instruction.
    from p2m_engine.data.datasets import MIN_SCORE, task_query
    from p2m_engine.students.embeddings import embed

    folder = tmp_path / "hub" / "news_topics"
    folder.mkdir(parents=True)
    info = json.loads((SHARED_DATA / "ag_news" / "dataset_info.json").read_text())
    info.pop("instruction")
    (folder / "dataset_info.json").write_text(json.dumps(info))
    (folder / "train.jsonl").symlink_to(SHARED_DATA / "ag_news" / "train.jsonl")
    spec = parse_task((SHARED_DATA / "ag_news" / "prompt.txt").read_text())
    d = scan_hub([tmp_path / "hub"])[0]
    doc, with_demos = embed([d.document(), task_query(spec)])
    assert sum(a * b for a, b in zip(doc, with_demos)) < MIN_SCORE  # the old query alone misses it
    cand = search_hub(spec, [tmp_path / "hub"], index_dir=tmp_path / "idx")[0]
    assert cand.name == "news_topics" and cand.score >= MIN_SCORE and cand.fits, cand.summary()
