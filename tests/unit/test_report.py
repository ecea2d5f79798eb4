"""The HTML run report (`p2m trace RUN --html`): its numbers match the run's files, untrusted text is
escaped, and a real headless Chromium renders it without errors and without running injected code."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from markupsafe import escape

from agent.cli import cli
from agent.report import render_report, write_report
from agent.trace import TraceWriter
from p2m_engine.eval.metrics import classification_metrics, per_label_recall
from p2m_engine.runs import Run, append_jsonl, write_jsonl

LABELS = ["positive", "negative", "neutral"]
# Payloads that would run in a browser if the page did not escape them.
SCRIPT_PAYLOAD = "<script>window.__pwned=1;document.title='pwned'</script>"
IMG_PAYLOAD = "<img src=x \"onerror=window.__pwned=2;document.title='pwned'\" onerror=\"window.__pwned=3\">"
ATTR_PAYLOAD = 'x" onerror="window.__pwned=4" y="'

# (gold, prediction, probability) of the test split; the last row's input carries the payloads.
TEST_PREDICTIONS = [
    ("positive", "positive", 0.91), ("positive", "positive", 0.88), ("positive", "negative", 0.61),
    ("negative", "negative", 0.95), ("negative", "negative", 0.79), ("negative", "negative", 0.52),
    ("neutral", "neutral", 0.66), ("neutral", "positive", 0.58), ("neutral", "neutral", 0.71),
    ("positive", "neutral", 0.83),
]


def _decision(step: int, name: str, allowed: list[str], by: str = "rules", reason: str = "next step of the default pipeline") -> dict[str, Any]:
    """A decision event as agent/nodes.py `plan` records it."""
    return {"kind": "decision", "node": "plan", "step": step, "name": name, "decided_by": by, "reason": reason,
            "allowed": allowed, "state": {"labels": ", ".join(LABELS), "steps_taken": step, "steps_left": 12 - step},
            "duration_ms": 3 if by == "rules" else 2140, "tokens_in": 0 if by == "rules" else 812,
            "tokens_out": 0 if by == "rules" else 41}


def _tool(step: int, name: str, summary: dict[str, Any], ms: int, calls: int = 0, tokens: int = 0, **extra: Any) -> dict[str, Any]:
    """A tool event as agent/nodes.py `observe` records it."""
    return {"kind": "tool", "node": "run_tools", "step": step, "name": name, "ok": True,
            "output_summary": json.dumps(summary)[:500], "duration_ms": ms, "llm_calls": calls, "tokens": tokens, **extra}


def make_run(root: Path) -> Path:
    """A finished run folder written by hand in the formats agent/ and tools/ write, without any LLM.

    Two training/evaluation rounds (the planner asked for more data after the first), one failed tool
    call, retrieved and generated data, predictions for the test split and the demonstrations.
    """
    run = Run.create(root, "Classify the sentiment of a product review")
    task = {"instruction": "Classify the sentiment of a product review as positive, negative or neutral.",
            "examples": [{"input": "Love it, works great", "output": "positive"},
                         {"input": "Broke after a day", "output": "negative"},
                         {"input": "It is a phone case", "output": "neutral"}],
            "task_type": "classification", "labels": LABELS}
    run.write_json("task.json", task)
    run.write_json("config.json", {"planner": "llm", "llm": {"backend": "openai", "model": "gpt-test"}})
    retrieved = [{"input": f"review {i} from the hub", "output": lb, "source": "amazon_reviews"}
                 for i, lb in enumerate(["positive"] * 7 + ["negative"] * 5)]
    write_jsonl(run.path("data", "retrieved.jsonl"), retrieved)
    generated = [{"input": f"synthetic {lb} text {i}", "output": lb, "source": "generated", "model": "gpt-test",
                  "temperature": 0.9, "batch": i, "template": "generate_examples"}
                 for lb, n in (("positive", 2), ("negative", 3), ("neutral", 6)) for i in range(n)]
    generated[0]["input"] = f"great value {SCRIPT_PAYLOAD} {IMG_PAYLOAD}"
    append_jsonl(run.path("data", "generated.jsonl"), generated)
    write_jsonl(run.path("data", "train.jsonl"), (r for r in (retrieved + generated)[:18]))
    write_jsonl(run.path("data", "val.jsonl"), (r for r in (retrieved + generated)[18:]))
    test_rows = [{"input": f"held-out review {i}", "gold": g, "prediction": p, "probability": q, "correct": g == p}
                 for i, (g, p, q) in enumerate(TEST_PREDICTIONS)]
    test_rows[-1]["input"] = f"meh {SCRIPT_PAYLOAD} and {IMG_PAYLOAD}"
    write_jsonl(run.path("predictions", "test.jsonl"), test_rows)
    demo_rows = [{"input": e["input"], "gold": e["output"], "prediction": e["output"], "probability": 0.7, "correct": True}
                 for e in task["examples"]]
    write_jsonl(run.path("predictions", "demos.jsonl"), demo_rows)
    metrics: dict[str, Any] = {}
    for split, rows in (("demos", demo_rows), ("test", test_rows)):
        gold, pred = [r["gold"] for r in rows], [r["prediction"] for r in rows]
        metrics[split] = {"split": split, "n": len(rows), "metrics": classification_metrics(gold, pred),
                          "per_label_recall": per_label_recall(gold, pred),
                          "predictions_path": str(run.dir / "predictions" / f"{split}.jsonl")}
    metrics["val_score"] = 0.8
    run.write_json("metrics.json", metrics)
    score = round(metrics["test"]["metrics"]["accuracy"], 4)
    search = {"dataset": "amazon_reviews", "retrieved": 12, "candidates": [
        {"name": "amazon_reviews", "score": 0.71, "fit": "labels map: positive, negative"},
        {"name": "sms_spam", "score": 0.22, "fit": "labels do not fit"}]}
    all_steps = ["search_datasets", "search_models", "generate_examples"]
    trace = TraceWriter(run.dir, run.id)
    trace.write([
        _decision(0, "search_datasets", all_steps, by="llm", reason="real labelled data first"),
        _tool(0, "search_datasets", search, 412, candidates=[
            {"name": "amazon_reviews", "path": "/hub/amazon_reviews", "score": 0.71, "reason": "labels map"},
            {"name": "sms_spam", "path": "/hub/sms_spam", "score": 0.22, "reason": "labels do not fit"}]),
        _decision(1, "search_models", ["search_models", "generate_examples"], by="llm", reason="need a student"),
        _tool(1, "search_models", {"base_model": "all-MiniLM-L6-v2"}, 35),
        _decision(2, "generate_examples", ["generate_examples", "train_model"], by="llm", reason="neutral has no data"),
        _tool(2, "generate_examples", {"generated": 6, "per_label": {"neutral": 6}}, 48200, calls=6, tokens=5120,
              dropped={"duplicate": 3, "too_long": 1}, stopped_labels=[]),
        _decision(3, "train_model", ["generate_examples", "train_model"], by="llm", reason="enough to try"),
        _tool(3, "train_model", {"train_loss": 0.91, "val_score": 0.55, "n_train": 14, "n_val": 4}, 20500),
        _decision(4, "evaluate_model", ["generate_examples", "evaluate_model"], by="rules", reason="the only valid action"),
        _tool(4, "evaluate_model", {"test": {"n": 10, "accuracy": 0.5}}, 3100, score=0.5, score_split="test"),
        {**_decision(5, "generate_examples", ["generate_examples", "finish"], by="llm", reason="positive and negative are thin"),
         "args": {"per_label": 40, "guidance": "short <b>reviews</b>"}, "args_by": "llm", "clipped": {"per_label": 500}},
        {**_tool(5, "generate_examples", {}, 900, calls=1, tokens=300), "ok": False,
         "error": "LLMError: the endpoint returned 503 <b>Service Unavailable</b>"},
        _decision(6, "generate_examples", ["generate_examples", "finish"], by="llm", reason="retry once"),
        _tool(6, "generate_examples", {"generated": 11, "per_label": {"positive": 2, "negative": 3, "neutral": 6}},
              30100, calls=4, tokens=3900),
        _decision(7, "train_model", ["train_model", "finish"], by="llm", reason="retrain on more data"),
        _tool(7, "train_model", {"train_loss": 0.62, "val_score": 0.8, "n_train": 18, "n_val": 5}, 24800),
        _decision(8, "evaluate_model", ["evaluate_model"], reason="the only valid action"),
        _tool(8, "evaluate_model", {"test": {"n": 10, "accuracy": score}}, 2900, score=score, score_split="test"),
        _decision(9, "finish", ["generate_examples", "finish"], by="llm", reason="the score is good enough"),
        {"kind": "finish", "node": "finish", "step": 9, "name": "finish", "reason": "the score is good enough",
         "score": score, "model_dir": str(run.dir / "model")},
    ])
    run.write_json("summary.json", {"run": str(run.dir), "finish_reason": "the score is good enough", "score": score,
                                    "base_model": "all-MiniLM-L6-v2", "teacher": "gpt-test", "wall_s": 131.2,
                                    "model_dir": str(run.dir / "model")})
    return run.dir


class Page(HTMLParser):
    """Collects every tag with its attributes, and the cells of every table row by table id."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.tables: dict[str, list[list[tuple[str, dict[str, str | None], str]]]] = {}
        self._table: str | None = None
        self._cell: list[Any] | None = None
        self.by_id: dict[str, tuple[dict[str, str | None], str]] = {}
        self._id_stack: list[tuple[str, str, list[str]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "table" and a.get("id"):
            self._table = str(a["id"])
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = [tag, a, ""]
        if a.get("id") and tag not in ("table", "svg", "section"):
            self._id_stack.append((tag, str(a["id"]), []))
            self.by_id[str(a["id"])] = (a, "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append((self._cell[0], self._cell[1], self._cell[2].strip()))
            self._cell = None
        if self._id_stack and self._id_stack[-1][0] == tag:
            _, ident, text = self._id_stack.pop()
            self.by_id[ident] = (self.by_id[ident][0], "".join(text).strip())

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell[2] += data
        for _, _, text in self._id_stack:
            text.append(data)


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path / "runs")


def test_numbers_in_the_page_match_the_run_files(run_dir: Path) -> None:
    page = Page(render_report(run_dir))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # Final score: accuracy on the test split, as in metrics.json (7 of 10 right).
    attrs, text = page.by_id["final-score"]
    assert float(str(attrs["data-value"])) == metrics["test"]["metrics"]["accuracy"] == 0.7
    assert text == "0.7000"
    # Confusion matrix: every cell equals the count of (gold, prediction) pairs in predictions/test.jsonl.
    pairs = Counter((g, p) for g, p, _ in TEST_PREDICTIONS)
    rows = page.tables["cm-test"]
    header = [text for tag, _, text in rows[0][1:-1]]
    assert header == LABELS
    for row in rows[1:]:
        gold = row[0][2]
        counts = [int(str(a["data-count"])) for tag, a, _ in row[1:-1]]
        assert counts == [pairs[(gold, p)] for p in header], gold
        assert int(row[-1][2]) == sum(pairs[(gold, p)] for p in header)
    assert sum(int(str(a["data-count"])) for row in rows[1:] for _, a, _ in row[1:-1]) == len(TEST_PREDICTIONS)
    # Label counts by source, from data/retrieved.jsonl and data/generated.jsonl.
    table = {row[0][2]: [int(c[2]) for c in row[1:]] for row in page.tables["label-table"][1:]}
    assert table["positive"] == [7, 2, 9, 9]
    assert table["negative"] == [5, 3, 8, 8]
    assert table["neutral"] == [0, 6, 6, 6]
    assert table["all"] == [12, 11, 23, 23]
    # Error examples: the 3 mistakes, most confident first.
    errors = page.tables["errors-test"][1:]
    assert [float(r[3][2]) for r in errors] == [0.83, 0.61, 0.58]
    # Metrics table mirrors metrics.json.
    m = {row[0][2]: row for row in page.tables["metrics-table"][1:]}
    assert m["test"][3][2] == f"{metrics['test']['metrics']['macro_f1']:.4f}"
    assert set(m) == {"demos", "test"}


def test_timeline_and_score_curve_come_from_the_trace(run_dir: Path) -> None:
    html = render_report(run_dir)
    page = Page(html)
    decisions = [a for t, a in page.tags if t == "li" and a.get("class") == "decision"]
    tools = [a for t, a in page.tags if t == "li" and str(a.get("class", "")).startswith("tool")]
    assert len(decisions) == 10 and len(tools) == 9
    assert sum(1 for a in tools if a.get("class") == "tool error") == 1
    assert "the endpoint returned 503 &lt;b&gt;Service Unavailable&lt;/b&gt;" in html
    # Two evaluations and two validation scores: four points; the chart is inline SVG.
    circles = [a for t, a in page.tags if t == "circle"]
    assert len(circles) == 4
    assert "0.500" in html and "0.700" in html and "0.550" in html and "0.800" in html
    assert page.by_id["finish-reason"][1] == "the score is good enough"
    # A decision's arguments: who set them, and what the policy clipped (untrusted text escaped).
    assert "arguments (set by the LLM)" in html and "per_label=40" in html and "(asked 500, clipped)" in html
    assert "guidance=short &lt;b&gt;reviews&lt;/b&gt;" in html


def test_untrusted_text_is_escaped_everywhere(run_dir: Path) -> None:
    html = render_report(run_dir)
    for payload in (SCRIPT_PAYLOAD, IMG_PAYLOAD):
        assert payload not in html
        # Once in the generated examples, once in the errors of the test split.
        assert html.count(str(escape(payload))) == 2, payload
    tags = Page(html).tags
    assert not [t for t, _ in tags if t in ("script", "img", "iframe", "object")]
    assert not [(t, k) for t, a in tags for k in a if k.lower().startswith("on")]
    # No external assets: nothing loads from another origin.
    for t, a in tags:
        for k in ("src", "href"):
            assert not str(a.get(k) or "").startswith(("http:", "https:", "//")), (t, a)
    assert "Content-Security-Policy" in html


def test_untrusted_text_in_attributes_cannot_break_out(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    task = json.loads((run_dir / "task.json").read_text())
    task["labels"] = [ATTR_PAYLOAD, *LABELS]
    task["instruction"] = ATTR_PAYLOAD + SCRIPT_PAYLOAD
    (run_dir / "task.json").write_text(json.dumps(task))
    append_jsonl(run_dir / "predictions" / "test.jsonl",
                 [{"input": "x", "gold": ATTR_PAYLOAD, "prediction": "neutral", "probability": 0.9, "correct": False}])
    html = render_report(run_dir)
    assert ATTR_PAYLOAD not in html and '" onerror="' not in html
    tags = Page(html).tags
    assert not [(t, k) for t, a in tags for k in a if k.lower().startswith("on")]
    # The label is an attribute value, intact and inert.
    assert any(a.get("title") == ATTR_PAYLOAD for _, a in tags)


def test_a_run_without_evaluation_still_renders(tmp_path: Path) -> None:
    run = Run.create(tmp_path, "task")
    run.write_json("task.json", {"instruction": "Sort mail", "labels": ["a", "b"], "examples": []})
    TraceWriter(run.dir, run.id).write([_decision(0, "search_models", ["search_models"]),
                                        {"kind": "finish", "step": 1, "name": "finish", "reason": "step budget of 1 reached"}])
    html = render_report(run.dir)
    assert "not evaluated" in html and "No metrics.json" in html and "step budget of 1 reached" in html


# --- The page in a real browser -------------------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", "/usr/bin/chromedriver"
APT_HINT = "apt-get install -y chromium chromium-driver"


def _browser(tmp_path: Path) -> Any:
    """Headless Chromium through selenium with the system chromedriver (no Selenium Manager download).

    Skips when Chromium is missing, except in CI (CI set), where a missing browser is a failure.
    """
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip install -e .[test])")
    if missing:
        message = f"headless browser test needs {', '.join(missing)} ({APT_HINT})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,2000", f"--user-data-dir={tmp_path / 'chrome-profile'}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)


def _load(driver: Any, page: Path) -> tuple[list[dict[str, Any]], Any, str]:
    driver.get(page.resolve().as_uri())
    severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    return severe, driver.execute_script("return window.__pwned === undefined ? null : window.__pwned"), driver.title


def test_page_renders_in_headless_chromium_without_errors_or_injected_code(run_dir: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    page = write_report(run_dir, tmp_path / "report.html")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    driver = _browser(tmp_path)
    try:
        severe, pwned, title = _load(driver, page)
        assert severe == []
        assert pwned is None and "pwned" not in title and title.startswith("p2m run")
        score = driver.find_element(By.ID, "final-score")
        assert float(score.get_attribute("data-value")) == metrics["test"]["metrics"]["accuracy"]
        assert score.text == f"{metrics['test']['metrics']['accuracy']:.4f}"
        # The payload is on the page as visible text, not as markup.
        errors = driver.find_element(By.ID, "errors-test").text
        assert "<script>window.__pwned=1" in errors
        assert driver.find_element(By.ID, "score-chart").size["width"] > 300
        # Control: the same page with the payload left unescaped is caught (it runs, or the CSP reports it).
        raw = page.read_text().replace("</main>", SCRIPT_PAYLOAD + "</main>")
        control = tmp_path / "unescaped.html"
        control.write_text(raw)
        severe, pwned, title = _load(driver, control)
        assert severe or pwned is not None
    finally:
        driver.quit()


# --- CLI ------------------------------------------------------------------------------------------------


def test_cli_trace_html_writes_the_page(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.html"
    result = CliRunner().invoke(cli, ["trace", str(run_dir), "--html", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out)
    html = out.read_text()
    assert html.startswith("<!doctype html>") and run_dir.name in html
    # Without -o the page goes into the run folder.
    result = CliRunner().invoke(cli, ["trace", str(run_dir), "--html"], catch_exceptions=False)
    assert result.exit_code == 0 and (run_dir / "trace.html").is_file()


def test_cli_trace_without_html_still_prints_the_tree(run_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["trace", str(run_dir)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "search_datasets" in result.output and "the score is good enough" in result.output
    result = CliRunner().invoke(cli, ["trace", str(run_dir), "--json"], catch_exceptions=False)
    assert len(result.output.strip().splitlines()) == 20


def test_cli_trace_html_on_a_missing_run_fails_clearly(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["trace", str(tmp_path / "nope"), "--html"])
    assert result.exit_code == 1 and "No trace in" in result.output
