"""Real hub text labelled by judges weighted on the demonstrations (label_texts), and the probe behind retrieval."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from p2m_engine.data.labelling import LabelConfig, judge_weights, keep_confident, label_texts, pooled, teacher_on_demos
from p2m_engine.data.pool import collect, is_question, length_bounds, pieces, same_form
from p2m_engine.data.probe import score_rows
from p2m_engine.runs import read_jsonl
from p2m_engine.types import Example, TaskSpec

SPORT = ["the striker scored twice and the team won the cup final", "a late goal sealed the league title for the club",
         "the tennis champion won the match in straight sets", "the coach praised his players after the football win",
         "the sprinter broke the world record in the final race", "fans cheered as the goalkeeper saved a penalty"]
WEATHER = ["heavy rain and strong winds are expected tomorrow", "temperatures will drop below freezing overnight",
           "a sunny afternoon with light clouds and mild temperatures", "snow is forecast for the mountains this weekend",
           "thunderstorms will bring hail to the north on friday", "a warm front brings humid air and showers"]
SPEC = TaskSpec("Is this news sentence about sport or about the weather?",
                (Example("the midfielder scored a stunning goal in the derby", "sport"),
                 Example("fog and drizzle will linger until noon", "weather")),
                "classification", ("sport", "weather"))


def hub_of_texts(root: Path) -> Path:
    folder = root / "hub" / "news_sentences"
    folder.mkdir(parents=True)
    (folder / "dataset_info.json").write_text(json.dumps({"name": "news_sentences", "task_type": "generation"}))
    with (folder / "train.jsonl").open("w") as f:
        for text in SPORT + WEATHER:
            f.write(json.dumps({"input": f"Headline: {text}", "output": "unrelated"}) + "\n")
    return root / "hub"


class KeywordTeacher:
    """A fake teacher with known label log-probabilities: sport for sport words, weather for weather words."""

    def __init__(self) -> None:
        self.calls = 0
        self.usage = type("U", (), {"calls": 0})()

    def first_token_logprobs(self, messages: list[dict[str, Any]], *, top: int = 20, name: str = "score") -> dict[str, float]:
        self.usage.calls += 1
        text = messages[-1]["content"].rsplit("input:", 1)[-1].lower()
        sport = any(w in text for w in ("goal", "won", "match", "race", "coach", "fans", "scored"))
        weather = any(w in text for w in ("rain", "snow", "fog", "temperature", "sunny", "storm", "front", "wind", "drizzle"))
        p = 0.9 if sport else 0.1 if weather else 0.5  # a content-free input gets no preference
        return {"sport": math.log(p), "weather": math.log(1 - p)}

    def cost_usd(self, prompt_tokens: int | None = None, completion_tokens: int | None = None) -> float | None:
        return 0.0  # a local model


def test_pieces_split_marked_fields_lines_and_long_prose() -> None:
    parts = pieces("Question: Who won? Context: The final was close. The home side won it late. " + "x " * 100)
    assert "Who won?" in parts and any(p.startswith("The final was close.") for p in parts)
    assert parts[0].startswith("Question:")
    lo, hi = length_bounds(["short one", "a somewhat longer demonstration input"])
    assert lo >= 3 and hi >= 40


def test_pool_excludes_held_out_texts_and_demos(tmp_path: Path) -> None:
    from p2m_engine.data.synth import normalize

    hub = hub_of_texts(tmp_path)
    texts, vecs = collect([hub], [e.input for e in SPEC.examples], exclude={normalize(SPORT[0])})
    found = {t.text for t in texts}
    assert SPORT[1] in found and SPORT[0] not in found and len(vecs) == len(texts)
    assert all(t.source == "news_sentences/train" for t in texts)


def test_a_question_task_takes_only_questions_and_other_tasks_take_any_form(tmp_path: Path) -> None:
    assert is_question("Who won the cup?") and is_question('He asked "why?"') and not is_question("It rained.")
    assert same_form(["Who wrote it?", "How far is it?"])("the team won") is False
    assert same_form(["the team won", "Who wrote it?"]) is None  # mixed demos: no rule
    assert same_form(["the team won", "rain all day"]) is None  # statements do not ban questions
    hub = tmp_path / "hub" / "mixed"
    hub.mkdir(parents=True)
    (hub / "dataset_info.json").write_text(json.dumps({"name": "mixed", "task_type": "generation"}))
    lines = ["Who scored the winning goal?", "The striker scored the winning goal.", "When does the rain stop?",
             "The rain stops at noon."]
    (hub / "train.jsonl").write_text("".join(json.dumps({"input": x, "output": "-"}) + "\n" for x in lines))
    texts, _ = collect([tmp_path / "hub"], ["Who won the final?", "Will it snow tomorrow?"])
    assert sorted(t.text for t in texts) == ["When does the rain stop?", "Who scored the winning goal?"]


def test_a_question_task_reads_more_rows_for_its_questions(tmp_path: Path) -> None:
    hub = tmp_path / "hub" / "mixed"
    hub.mkdir(parents=True)
    (hub / "dataset_info.json").write_text(json.dumps({"name": "mixed", "task_type": "generation"}))
    lines = [f"The match on day {i} ended in a draw." for i in range(8)] + ["Who scored first?", "When is the final?"]
    (hub / "train.jsonl").write_text("".join(json.dumps({"input": x, "output": "-"}) + "\n" for x in lines))
    # Two rows a split: a statement task gets two texts; a question task reads eight times as many rows and
    # keeps only their questions, so both are found wherever the shuffle put them.
    statements, _ = collect([tmp_path / "hub"], ["The game ended late.", "It rained all day."], rows_per_split=2)
    questions, _ = collect([tmp_path / "hub"], ["Who won the final?", "Will it snow tomorrow?"], rows_per_split=2)
    assert len(statements) <= 2
    assert sorted(t.text for t in questions) == ["When is the final?", "Who scored first?"]


def test_the_teacher_is_scored_on_each_demonstration_with_a_prompt_that_leaves_it_out() -> None:
    prompts: list[str] = []

    class Recording(KeywordTeacher):
        def first_token_logprobs(self, messages: list[dict[str, Any]], **kw: Any) -> dict[str, float]:
            prompts.append(messages[-1]["content"])
            return super().first_token_logprobs(messages, **kw)

    probs = teacher_on_demos(SPEC, Recording())  # type: ignore[arg-type]
    assert probs.shape == (2, 2) and list(probs.argmax(1)) == [0, 1]  # sport, weather: the keyword teacher is right
    scored = [p for p in prompts if any(f"input: {e.input}\nReply" in p for e in SPEC.examples)]
    assert len(scored) == 2
    for prompt, demo, other in zip(scored, SPEC.examples, SPEC.examples[::-1]):
        assert prompt.count(demo.input) == 1 and other.input in prompt  # shown only as the input scored


def test_label_texts_writes_confident_rows_with_provenance_and_weights_judges_on_the_demos(tmp_path: Path) -> None:
    hub = hub_of_texts(tmp_path)
    out = tmp_path / "labelled.jsonl"
    teacher = KeywordTeacher()
    result = label_texts(SPEC, [hub], out, LabelConfig(texts=12, keep=0.7, written=0), llm=teacher)  # type: ignore[arg-type]
    rows = list(read_jsonl(out))
    assert rows and result.count == len(rows) and set(result.per_label) == {"sport", "weather"}
    assert all(r["source"] == "teacher_labelled" and r["hub"] == "news_sentences/train" for r in rows)
    truth = {**{t: "sport" for t in SPORT}, **{t: "weather" for t in WEATHER}}
    assert all(r["output"] == truth[r["input"].removeprefix("Headline: ")] for r in rows)
    # Every judge was scored on the demonstrations; the teacher (right on both) has weight.
    assert set(result.judges) == {"label_name", "label_in_instruction", "teacher"}
    assert result.judges["teacher"]["accuracy"] == 1.0 and result.weights["teacher"] > 0
    assert result.llm_calls == teacher.usage.calls > 12


def test_label_texts_without_a_teacher_uses_the_encoder_judges(tmp_path: Path) -> None:
    result = label_texts(SPEC, [hub_of_texts(tmp_path)], tmp_path / "l.jsonl", LabelConfig(texts=12))
    assert "teacher" not in result.judges and result.count > 0 and result.llm_calls == 0


def test_judge_weights_give_nothing_to_a_judge_no_better_than_chance() -> None:
    assert judge_weights({"a": 0.4, "b": -0.1}) == {"a": 2.0, "b": 0.0}
    assert judge_weights({"a": -0.2, "b": 0.0}) == {"a": 1.0, "b": 1.0}
    p = pooled({"a": np.array([[0.9, 0.1]]), "b": np.array([[0.1, 0.9]])}, {"a": 2.0, "b": 0.0})
    assert p[0, 0] == pytest.approx(0.81 / 0.82)  # 0.9^2 against 0.1^2: weights are exponents
    assert keep_confident(np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]]), 0.5) == [0, 2]


def test_probe_beats_chance_on_rows_that_teach_the_task_and_not_on_inverted_ones() -> None:
    from p2m_engine.data.pool import embed_texts

    good = [Example(t, "sport") for t in SPORT] + [Example(t, "weather") for t in WEATHER]
    bad = [Example(e.input, "weather" if e.output == "sport" else "sport") for e in good]
    ev = embed_texts([e.input for e in SPEC.examples])
    y = np.array([0, 1])
    g, b = score_rows(good, SPEC.labels, ev, y), score_rows(bad, SPEC.labels, ev, y)
    assert g is not None and b is not None and g.accuracy == 1.0 and g.gain > 0 > b.gain
    assert score_rows([Example("x", "sport")], SPEC.labels, ev, y) is None  # one label: no probe


class KeywordGenerator(KeywordTeacher):
    """The keyword teacher that also writes label-conditioned examples (call_tool), as a build needs."""

    model = "keyword-teacher"

    def __init__(self) -> None:
        super().__init__()
        from p2m_engine.llm import Usage

        self.usage = Usage()

    def first_token_logprobs(self, messages: list[dict[str, Any]], *, top: int = 20, name: str = "score") -> dict[str, float]:
        self.usage.calls += 1
        return super().first_token_logprobs(messages, top=top, name=name)

    def call_tool(self, messages: list[dict[str, Any]], name: str, schema: dict[str, Any], *, temperature: float = 0.0,
                  max_tokens: int = 512, variant: int = 0, attempts: int = 3) -> dict[str, Any]:
        self.usage.calls += 1
        sport = 'label is "sport"' in messages[-1]["content"]
        words = ("the keeper saved a shot in match", "the runner won the race") if sport else ("rain and fog by", "snow and wind on")
        return {f"input_{k + 1}": f"{words[k % 2]} day {self.usage.calls} number {k}" for k in range(2)}


def test_a_build_without_labelled_data_trains_the_probe_student_on_soft_labels(tmp_path: Path) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    from agent.context import Context
    from agent.graph import build_graph
    from p2m_engine.students import probe_student
    from p2m_engine.students.evaluate import predict
    from p2m_engine.runs import Run
    from p2m_engine.data.synth import SynthConfig
    from p2m_engine.students.train import TrainConfig

    ctx = Context(run=Run.create(tmp_path / "runs", "t"), llm=KeywordGenerator(), hub_dirs=[hub_of_texts(tmp_path)],  # type: ignore[arg-type]
                  synth=SynthConfig(per_label=14, batch_size=2), train=TrainConfig(epochs=1, bf16="off", contrastive=2),
                  labelling=LabelConfig(texts=6, encoder_texts=20, written=0), target=0.999, max_iterations=1, max_steps=10)
    state = dict(build_graph(checkpointer=InMemorySaver()).invoke(
        {"task": SPEC.to_dict()}, {"configurable": {"thread_id": "t"}, "recursion_limit": 60}, context=ctx))
    tools = {e["name"]: e for e in state["trace"] if e["kind"] == "tool"}
    assert "label_texts" in tools and tools["train_model"]["ok"]
    soft = list(read_jsonl(ctx.run.dir / "data" / "soft_labels.jsonl"))
    assert len(soft) == 24 and {r["judges"] for r in soft} == {"all", "encoder"}  # each headline whole and its field
    assert all(set(r["probs"]) == {"sport", "weather"} for r in soft)
    # Each text's nearness to the task is recorded; the texts every judge scored are the nearest.
    near = {kind: [r["near"] for r in soft if r["judges"] == kind] for kind in ("all", "encoder")}
    assert np.median(near["all"]) > np.median(near["encoder"]) and all(-1 <= x <= 1 for x in near["encoder"])
    argmax = [max(r["probs"], key=r["probs"].get) for r in soft]
    assert state["real_per_label"] == {label: argmax.count(label) for label in set(argmax)}
    short = {label: 14 - argmax.count(label) for label in ("sport", "weather") if argmax.count(label) < 14}
    generated = list(read_jsonl(ctx.run.dir / "data" / "generated.jsonl")) if short else []
    assert {r["output"] for r in generated} <= set(short)  # the teacher writes only for labels the texts leave short
    assert short and "generate_examples" in tools  # 24 texts cannot give both labels 14
    model = Path(state["model_dir"])
    assert probe_student.is_probe_student(model)
    train_info = json.loads((ctx.run.dir / "iterations" / "1" / "model" / "p2m_train.json").read_text())
    assert train_info["student"] == "probe" and train_info["n_train"] >= len(soft) - train_info["n_val"]
    assert train_info["unlabelled"] == 0  # no --unlabelled file: every text is hub text
    # The far texts weighed less than the near ones (by nearness, at the default temperature).
    assert train_info["nearness"]["temperature"] == 0.05 and train_info["nearness"]["weight"] < train_info["nearness"]["rows"]
    # The encoder was tuned first on the 2 surest texts of each label and the demos, and is the model folder's own.
    assert train_info["contrastive"]["rows"] == 2 * 2 + len(SPEC.examples) and train_info["contrastive"]["pairs"] > 0
    from p2m_engine.students.card import write_model_card
    card = write_model_card(model, SPEC, {"base_model": "all-MiniLM-L6-v2"}).read_text()
    assert f"first tuned on {train_info['contrastive']['pairs']} pairs of {2 * 2 + len(SPEC.examples)} texts" in card
    assert f"nearness weights: the {train_info['nearness']['rows']} texts weighed {train_info['nearness']['weight']} in all" in card
    assert {label for label, _ in predict(model, ["the goalkeeper won the final", "fog and snow all day"])} <= {"sport", "weather"}


def test_pair_rows_are_probed_on_pair_features() -> None:
    from p2m_engine.data.pool import embed_texts

    topics = SPORT + WEATHER
    same = [Example(f"Sentence 1: {a}\nSentence 2: {a.replace('the ', 'a ', 1)}", "yes") for a in topics]
    other = [Example(f"Sentence 1: {a}\nSentence 2: {topics[(i + 5) % len(topics)]}", "no") for i, a in enumerate(topics)]
    demos = [same[0], other[3], same[7], other[9]]
    ev_texts = [e.input for e in demos]
    y = np.array([0 if e.output == "yes" else 1 for e in demos])
    rows = [e for e in same + other if e not in demos]
    pair = score_rows(rows, ("yes", "no"), embed_texts(ev_texts), y, evidence_texts=ev_texts)
    assert pair is not None and pair.accuracy == 1.0 and pair.gain > 0


def test_generation_fills_only_what_the_soft_labelled_texts_leave_short(tmp_path: Path) -> None:
    from p2m_engine.runs import Run, write_jsonl
    from tools.context import ToolContext
    from tools.synth import real_per_label

    run = Run.create(tmp_path / "runs", "t")
    ctx = ToolContext(run=run, llm=None, hub_dirs=[])  # type: ignore[arg-type]
    write_jsonl(run.path("data", "labelled.jsonl"), [{"input": "a", "output": "sport"}])
    assert real_per_label(ctx) == {"sport": 1}
    soft = [{"input": f"t{i}", "probs": {"sport": 0.6, "weather": 0.4} if i < 3 else {"sport": 0.1, "weather": 0.9}}
            for i in range(5)]
    write_jsonl(run.path("data", "soft_labels.jsonl"), soft)
    assert real_per_label(ctx) == {"sport": 3, "weather": 2}  # the probe student learns every soft-labelled text
    write_jsonl(run.path("data", "retrieved.jsonl"), [{"input": "r", "output": "weather"}])
    assert real_per_label(ctx) == {"weather": 1, "sport": 1}  # with real rows the fine-tuned student learns those
