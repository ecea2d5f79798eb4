"""`p2m bench` on a toy suite, through the OpenAI path and tiny models; figures checked by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from agent.cli import cli
from p2m_engine.eval.bench import markdown_table, read_suite
from tests.conftest import DEMO_HUB
from tests.openai_stub import OpenAIStub
from tests.openai_stub import SmsTeacher

PROMPT = 'Is this text {a} or {b}?\n\ninput="first {a} demo"\noutput="{a}"\n\ninput="first {b} demo"\noutput="{b}"\n'


def _write(path: Path, rows: list[tuple[str, str]]) -> None:
    path.write_text("".join(json.dumps({"input": i, "output": o}) + "\n" for i, o in rows))


def _suite(root: Path) -> Path:
    for name, a, b in (("alpha", "ham", "spam"), ("beta", "negative", "positive")):
        d = root / name
        d.mkdir(parents=True)
        (d / "prompt.txt").write_text(PROMPT.format(a=a, b=b))
        # Test: 3 of label a, 1 of label b, and a copy of the prompt's first demo (re-cased), which every system
        # is scored without. Train: 7 of a, 5 of b (majority a).
        _write(d / "test.jsonl", [(f"First {a.upper()} demo", a)] + [(f"test {a} {i}", a) for i in range(3)]
               + [(f"test {b} x", b)])
        _write(d / "train.jsonl", [(f"train {a} {i}", a) for i in range(7)] + [(f"train {b} {i}", b) for i in range(5)])
    gen = root / "gamma"
    gen.mkdir()
    (gen / "prompt.txt").write_text('Translate to French.\n\ninput="cat"\noutput="le chat noir"\n')
    _write(gen / "test.jsonl", [("dog", "le chien")])
    return root


class ClassifyingTeacher(SmsTeacher):
    """Also answers the teacher baseline: always the first label offered; free text: "le chien"."""

    def __call__(self, body: dict[str, Any]) -> tuple[str, Any]:
        if body["tool_choice"]["function"]["name"] == "answer":
            props = body["tools"][0]["function"]["parameters"]["properties"]
            if "label" not in props:
                return "tool", {"output": "le chien"}
            return "tool", {"label": props["label"]["enum"][0]}
        return super().__call__(body)


def test_bench_on_a_toy_suite(tmp_path: Path, tiny_encoder: Path) -> None:
    suite = _suite(tmp_path / "suite")
    out = tmp_path / "out"
    with OpenAIStub(responder=ClassifyingTeacher(), model="gpt-test") as stub:
        args = ["bench", str(suite), "--llm", "openai", "--model", "gpt-test", "--base-url", stub.base_url, "--hub",
                str(DEMO_HUB), "--base-model", str(tiny_encoder), "--budget", "per_label=2,epochs=1,retrieved=20",
                "--out", str(out), "--seed", "3"]
        result = CliRunner().invoke(cli, args, env={"OPENAI_API_KEY": "sk-x"})
        assert result.exit_code == 0, result.output
        calls_first = len(stub.chat_requests)
        # A rerun finds every system finished and asks the LLM nothing.
        again = CliRunner().invoke(cli, args, env={"OPENAI_API_KEY": "sk-x"})
        assert again.exit_code == 0 and len(stub.chat_requests) == calls_first
    data = json.loads((out / "results.json").read_text())
    alpha, beta = data["tasks"]["alpha"], data["tasks"]["beta"]
    # Hand computation: the teacher always answers the first label ("ham" / "negative"), which is 3 of 4.
    assert alpha["systems"]["teacher"]["score"] == 0.75 and beta["systems"]["teacher"]["score"] == 0.75
    # Majority of train is the first label: also 3 of 4.
    assert alpha["systems"]["trivial"] == {"score": 0.75, "macro_f1": round((6 / 7 + 0) / 2, 4), "label": "ham", "by_run": 0,
                                           "rule": "majority label"}
    # The p2m score is the accuracy of its saved predictions on the same test file.
    p2m = alpha["systems"]["p2m"]
    preds = [json.loads(x) for x in (Path(p2m["run"]) / "predictions" / "test.jsonl").read_text().splitlines()]
    assert len(preds) == 4 and p2m["score"] == round(sum(p["correct"] for p in preds) / 4, 4)
    assert not any("demo" in p["input"].lower() for p in preds)
    assert json.loads((Path(p2m["run"]) / "metrics.json").read_text())["demos_dropped"] == {"test": 1}
    assert alpha["n_test"] == 4
    assert json.loads((Path(p2m["run"]) / "config.json").read_text())["seed"] == 3  # --seed reaches every build
    assert p2m["params"] > 0 and p2m["latency_ms_p50"] > 0 and p2m["llm_calls"] > 0
    assert 0.0 <= alpha["systems"]["gold"]["score"] <= 1.0 and alpha["systems"]["gold"]["n_train"] > 0
    # A generation task is scored by chrF++: the teacher's answer equals the reference (1.0); copying the
    # input "dog" shares no character n-gram with "le chien" (0.0).
    gamma = data["tasks"]["gamma"]
    assert gamma["metric"] == "chrf++" and gamma["task_type"] == "generation"
    assert gamma["systems"]["teacher"]["score"] == 1.0 and gamma["systems"]["teacher"]["exact_match"] == 1.0
    assert gamma["systems"]["trivial"]["score"] == 0.0 and gamma["systems"]["trivial"]["rule"] == "copy the input"
    # A system that cannot run on a task type is reported as such, not hidden.
    assert gamma["systems"]["gold"]["status"] == "no train split"
    table = (out / "results.md").read_text()
    assert "| alpha | classification | accuracy | 4 |" in table and "75.0" in table
    assert "| gamma | generation | chrf++ | 1 |" in table
    assert data["machine"] and data["command"].startswith("p2m bench")


def test_read_suite_skips_incomplete_folders_and_checks_names(tmp_path: Path) -> None:
    suite = _suite(tmp_path)
    (tmp_path / "junk").mkdir()
    assert [t.name for t in read_suite(suite)] == ["alpha", "beta", "gamma"]
    assert read_suite(suite, ["beta"])[0].train_path is not None
    import pytest

    from p2m_engine.errors import P2MError

    with pytest.raises(P2MError, match="Unknown task"):
        read_suite(suite, ["delta"])


def test_a_task_is_scored_by_the_metric_its_dataset_card_declares(tmp_path: Path) -> None:
    from agent.bench import _score

    suite = _suite(tmp_path)
    gamma = tmp_path / "gamma" / "dataset_info.json"
    # A math answer: generation's main metric is chrF++, the card says exact match.
    gamma.write_text(json.dumps({"metric": "exact_match"}))
    task = read_suite(suite, ["gamma"])[0]
    assert task.metric("generation") == "exact_match"
    # A wrong answer sharing characters with the reference: chrF++ gives credit, exact match none.
    figures = _score("generation", ["The answer is 15"], ["The answer is 16"], task.metric("generation"))
    assert figures["score"] == 0.0 and figures["chrf++"] > 0.5
    # SQuAD's name for exact match is p2m's; a metric p2m does not compute (BLEU), or none, leaves the type's own.
    for declared, task_type, metric in [("squad_exact_match", "extractive-qa", "exact_match"),
                                        ("bleu", "generation", "chrf++"), ("", "classification", "accuracy")]:
        gamma.write_text(json.dumps({"metric": declared}))
        assert read_suite(suite, ["gamma"])[0].metric(task_type) == metric


def test_markdown_table_formats_scores() -> None:
    data = {"tasks": {"t": {"task_type": "classification", "metric": "accuracy", "n_test": 10,
                            "systems": {"p2m": {"score": 0.8125, "params": 22_700_000}, "teacher": {"score": 0.5}}}}}
    table = markdown_table(data)
    assert "| t | classification | accuracy | 10 | 81.2 | 50.0 | 22.7M |" in table


def test_hub_without_hides_the_tasks_own_dataset(tmp_path: Path) -> None:
    from agent.bench import hub_without

    suite = _suite(tmp_path / "suite")
    for name in ("alpha", "beta"):
        (suite / name / "dataset_info.json").write_text(json.dumps({"labels": ["a", "b"]}))
    task = read_suite(suite, ["alpha"])[0]
    [hub], hidden = hub_without(task, [suite], tmp_path / "out")
    assert sorted(p.name for p in hub.iterdir()) == ["beta"]
    assert (hub / "beta").resolve() == (suite / "beta").resolve()
    assert hidden == [{"dataset": "alpha", "path": str((suite / "alpha").resolve()), "reason": "the task's own folder"}]


def _hub_dataset(folder: Path, rows: list[tuple[str, str]]) -> None:
    folder.mkdir(parents=True)
    (folder / "dataset_info.json").write_text(json.dumps({"labels": ["ham", "spam"]}))
    _write(folder / "train.jsonl", rows)


def test_exclude_own_hides_same_named_and_copied_datasets_of_a_separate_hub(tmp_path: Path) -> None:
    """A suite folder of its own, benchmarked against another hub: the hub's dataset of the task's name, and a
    differently named copy of the test rows, are hidden; the rest of the hub stays available."""
    suite = _suite(tmp_path / "suite")  # alpha's test rows: "First HAM demo", "test ham 0..2", "test spam x"
    hub = tmp_path / "hub"
    _hub_dataset(hub / "Alpha", [("unrelated text", "ham")])  # the task's name, other case, no shared row
    # A copy under another name, re-cased and re-punctuated: the normalized inputs are the test's.
    _hub_dataset(hub / "mirror", [("TEST ham 0!", "ham"), ("test, ham 1", "ham"), ("Test spam x.", "spam"),
                                  ("other row", "ham")])
    _hub_dataset(hub / "kept", [("fresh text", "ham"), ("more fresh text", "spam")])
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["bench", str(suite), "--hub", str(hub), "--exclude-own", "--systems", "trivial",
                                      "--tasks", "alpha,beta", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    alpha = data["tasks"]["alpha"]["hidden_from_hub"]
    assert [(h["dataset"], h["reason"]) for h in alpha] == [
        ("Alpha", "has the task's name"), ("mirror", "shares rows with the test file (3 of 5 test inputs)")]
    assert data["tasks"]["beta"]["hidden_from_hub"] == []  # beta's test rows are nowhere in the hub
    assert sorted(p.name for p in (out / "hubs" / "alpha").iterdir()) == ["kept"]
    assert sorted(p.name for p in (out / "hubs" / "beta").iterdir()) == ["Alpha", "kept", "mirror"]
    table = (out / "results.md").read_text()
    assert "- alpha: `Alpha` (has the task's name); `mirror` (shares rows with the test file (3 of 5 test inputs))" in table


def test_shares_rows_needs_a_few_rows_or_a_share_of_the_test(tmp_path: Path) -> None:
    from p2m_engine.eval.bench import row_keys, shares_rows

    assert not shares_rows(0, 4) and shares_rows(1, 4)  # a tiny test file: one row is a quarter of it
    # Two chance matches in a larger test file are not a copy; three, or a tenth of the test rows, are.
    assert not shares_rows(2, 100) and shares_rows(3, 100) and shares_rows(3, 10_000) and shares_rows(2, 20)
    _write(tmp_path / "a.jsonl", [("Hello, World!", "x"), ("  ", "x")])
    _write(tmp_path / "b.jsonl", [("hello world", "y")])
    assert row_keys([tmp_path / "a.jsonl"]) == row_keys([tmp_path / "b.jsonl"]) and len(row_keys([tmp_path / "a.jsonl"])) == 1


def test_test_file_option_and_bad_suite(tmp_path: Path) -> None:
    suite = _suite(tmp_path / "suite")
    (suite / "alpha" / "dev.jsonl").write_text((suite / "alpha" / "test.jsonl").read_text())
    assert [t.name for t in read_suite(suite, test_name="dev.jsonl")] == ["alpha"]
    result = CliRunner().invoke(cli, ["bench", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "No suite folder" in result.output
    result = CliRunner().invoke(cli, ["bench", str(suite), "--systems", "p2m,oracle"])
    assert result.exit_code == 1 and "Unknown system" in result.output


def test_results_resume_and_name_the_run_of_every_row(tmp_path: Path) -> None:
    from p2m_engine.eval.bench import BenchResults

    path = tmp_path / "results.json"
    first = BenchResults(path, {"command": "p2m bench A"})
    first.task("alpha", "classification", "accuracy", 4)
    first.record("alpha", "p2m", {"score": 0.5})
    second = BenchResults(path, {"command": "p2m bench B --systems teacher"})
    assert second.has("alpha", "p2m") and not second.has("alpha", "teacher")
    second.record("alpha", "teacher", {"score": 0.25})
    data = json.loads(path.read_text())
    assert [r["command"] for r in data["runs"]] == ["p2m bench A", "p2m bench B --systems teacher"]
    assert data["command"] == "p2m bench A"
    assert data["tasks"]["alpha"]["systems"]["p2m"]["by_run"] == 0
    assert data["tasks"]["alpha"]["systems"]["teacher"]["by_run"] == 1


def test_an_ablation_switches_off_one_part_and_its_column_follows_p2m() -> None:
    import pytest

    from agent.bench import ABLATIONS
    from agent.budget import Budget
    from agent.build import build_configs
    from p2m_engine.errors import P2MError

    budget, synth, train, labelling = build_configs([], Budget(), 0)
    assert labelling.label_queries and not build_configs(["label_queries"], Budget(), 0)[3].label_queries
    assert "no_label_queries" in ABLATIONS
    assert budget.targets.written == 60 and build_configs(["written"], Budget(), 0)[0].targets.written == 0
    assert "no_written" in ABLATIONS
    assert budget.targets.labelled == Budget().targets.labelled and synth.attributes and train.prior and train.rival and train.soft
    budget, synth, train, _ = build_configs(["prior", "labelling"], Budget(), 0)
    assert not train.prior and budget.targets.labelled == 0 and train.rival and train.soft and synth.attributes
    _, synth, train, _ = build_configs(["soft_labels", "attributes"], Budget(), 0, concurrency=16)
    assert not train.soft and not synth.attributes and train.prior and synth.concurrency == 16
    assert build_configs([], Budget(), 0)[2].cloze > 0 and build_configs(["cloze"], Budget(), 0)[2].cloze == 0
    assert build_configs([], Budget(), 0)[2].contrastive > 0 and build_configs(["contrastive"], Budget(), 0)[2].contrastive == 0
    assert "no_contrastive" in ABLATIONS
    both = build_configs(["consistency"], Budget(), 0)[2]
    assert build_configs([], Budget(), 0)[2].consistency == 5 and both.consistency == 0 and both.contrastive > 0
    assert "no_consistency" in ABLATIONS
    with pytest.raises(P2MError, match="unknown part"):
        build_configs(["retrieval"], Budget(), 0)
    # The generation rival from the teacher's weights: the budget's steps, else fewer without a GPU.
    import torch

    assert build_configs([], Budget(), 0)[2].teacher_steps == (40 if torch.cuda.is_available() else 20)
    assert build_configs([], Budget.parse("teacher_steps=0"), 0)[2].teacher_steps == 0
    assert build_configs([], Budget.parse("teacher_steps=7"), 0)[2].teacher_steps == 7
    assert {"no_prior", "no_labelling", "no_rival", "no_soft_labels"} <= set(ABLATIONS)
    data = {"tasks": {"t": {"task_type": "classification", "metric": "accuracy", "n_test": 10,
                            "systems": {"trivial": {"score": 0.25}, "no_prior": {"score": 0.5}, "p2m": {"score": 0.75}}}}}
    header = markdown_table(data).splitlines()[0]
    assert header.index("p2m") < header.index("no_prior") < header.index("trivial")
