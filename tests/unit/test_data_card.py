"""The data card: sources, counts per label and split, filter statistics and examples, from a run folder."""

from __future__ import annotations

import json
from pathlib import Path

from p2m_engine.data.data_card import write_data_card
from p2m_engine.types import Example, TaskSpec

SPEC = TaskSpec("Is this SMS spam or ham?", (Example("WIN cash", "spam"), Example("see you", "ham")), "classification",
                ("spam", "ham"))


def _write(path: Path, rows: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_data_card_counts_sources_filters_and_examples(tmp_path: Path) -> None:
    data = tmp_path / "data"
    retrieved = [{"input": f"real ham {i}", "output": "ham"} for i in range(3)] + [{"input": "real spam", "output": "spam"}]
    generated = [{"input": "FREE | `prize` now", "output": "spam", "model": "teacher-x", "temperature": 0.8},
                 {"input": "claim your reward", "output": "spam", "model": "teacher-x", "temperature": 1.2,
                  "targeted": True}]
    _write(data / "retrieved.jsonl", retrieved)
    _write(data / "generated.jsonl", generated)
    _write(data / "train.jsonl", [{"input": r["input"], "output": r["output"]} for r in retrieved[1:] + generated])
    _write(data / "val.jsonl", [retrieved[0]])
    path = write_data_card(tmp_path, SPEC, dataset="sms_spam", dropped={"leak": 2, "duplicate": 5})
    text = path.read_text()
    assert path == data / "README.md"
    assert "- **Retrieved**: 4 rows from `sms_spam`" in text
    assert "- **Generated**: 2 rows by `teacher-x`, temperature 0.80 to 1.20; 1 of them targeted at weak labels" in text
    assert "| label | retrieved | generated | train | val |" in text
    assert "| spam | 1 | 2 | 3 | 0 |" in text and "| ham | 3 | 0 | 2 | 1 |" in text
    assert text.index("| duplicate | 5 |") < text.index("| leak | 2 |")  # most dropped first
    # Examples name their source; data is escaped so it cannot break the table or open code spans.
    assert "| generated | FREE \\| 'prize' now | spam |" in text and "| retrieved | real spam | spam |" in text


def test_data_card_without_retrieval_or_labels(tmp_path: Path) -> None:
    spec = TaskSpec("Rewrite in the past tense.", (Example("I walk", "I walked"),), "generation")
    _write(tmp_path / "data" / "train.jsonl", [{"input": "I run", "output": "I ran"}])
    text = write_data_card(tmp_path, spec, dataset=None, dropped={}).read_text()
    assert "- **Retrieved**: none" in text and "- **Generated**: none" in text
    assert "| all | 1 |" in text and "No generated candidate was dropped." in text
    assert "Cloze" not in text


def test_cloze_questions_are_carded_as_made_without_the_teacher(tmp_path: Path) -> None:
    spec = TaskSpec("Answer from the context.", (Example("Question: who? Context: Ann came.", "Ann"),), "extractive-qa")
    _write(tmp_path / "data" / "cloze.jsonl", [{"input": "Question: What came? Context: Bo came. It rained.",
                                                "output": "Bo", "source": "cloze"}] * 3)
    text = write_data_card(tmp_path, spec, dataset=None, dropped={}).read_text()
    assert "- **Cloze** (`cloze.jsonl`): 3 questions made from hub passages without the teacher" in text


def test_malformed_hub_lines_and_an_empty_hub_are_shown_traced_and_carded(tmp_path: Path, tiny_encoder: Path) -> None:
    """Issue 14, item 7: skipped lines of the chosen dataset reach the console, the trace and the data card; a hub
    folder without datasets is warned about."""
    import shutil

    from click.testing import CliRunner

    from agent.cli import cli
    from tests.conftest import DEMO_HUB, ROOT
    from tests.openai_stub import OpenAIStub
    from tests.openai_stub import SmsTeacher

    hub, empty = tmp_path / "hub", tmp_path / "empty_hub"
    shutil.copytree(DEMO_HUB, hub)
    empty.mkdir()
    for train in hub.glob("*/train.jsonl"):
        with train.open("a") as f:
            f.write('{broken json\n{"text": "no input"}\n')
    with OpenAIStub(responder=SmsTeacher(), model="gpt-test") as stub:
        result = CliRunner().invoke(
            cli, ["build", str(ROOT / "examples" / "sms_spam.txt"), "--llm", "openai", "--base-url", stub.base_url,
                  "--model", "gpt-test", "--hub", str(hub), "--hub", str(empty), "--base-model", str(tiny_encoder),
                  "--out", str(tmp_path / "runs"), "--budget", "per_label=2,epochs=1,retrieved=20,iterations=1",
                  "--json"], env={"OPENAI_API_KEY": "sk-hub-test"})
    assert result.exit_code in (0, 2), result.output
    flat = " ".join(result.stderr.split())
    assert f"--hub {empty} holds no dataset folder" in flat
    assert "2 malformed line(s) of the dataset were skipped" in flat
    run = Path(json.loads(result.stdout)["run"])
    events = [json.loads(x) for x in (run / "trace.jsonl").read_text().splitlines()]
    [search] = [e for e in events if e.get("kind") == "tool" and e["name"] == "search_datasets"]
    assert search["skipped_lines"] == 2 and "train.jsonl" in search["malformed_lines"][0]
    assert any(e["kind"] == "warning" and str(empty) in e["message"] for e in events)
    card = (run / "data" / "README.md").read_text()
    assert "**Skipped**: 2 malformed line(s)" in card
