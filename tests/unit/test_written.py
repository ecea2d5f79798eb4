"""Inputs the teacher writes like the demonstrations, without labels, and labelled by the judges (written)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from p2m_engine.data.labelling import LabelConfig, label_texts
from p2m_engine.data.pool import WRITTEN, collect, take
from p2m_engine.data.synth import normalize
from p2m_engine.data.written import WriteConfig, nearer_than, write_inputs
from p2m_engine.runs import read_jsonl
from tests.unit.test_labelling import SPEC, KeywordGenerator, hub_of_texts

NEW = ["the goalkeeper saved two penalties in the shootout", "a hailstorm flattened the crops near the river",
       "the cyclist won the mountain stage by a minute", "frost will cover the valleys before sunrise",
       "the boxer kept his title after twelve rounds", "a dry wind will fan the fires along the coast"]


# Inputs unlike the task's (sport or weather news): kitchen and household lines.
FAR = ["whisk the butter and sugar before folding in the flour", "rinse the lentils twice and simmer them gently",
       "sharpen the kitchen knife on a whetstone every month", "fold the laundry while the towels are still warm",
       "knead the dough until it springs back under a finger", "descale the kettle with a splash of white vinegar",
       "roast the peppers until their skins blister and char", "sort the spice jars alphabetically on the shelf",
       "grate a little nutmeg over the custard before serving", "soak the beans overnight in plenty of cold water",
       "polish the silver cutlery with a soft cotton cloth", "chop the parsley finely and scatter it over the soup",
       "let the bread cool on a wire rack before slicing it", "water the basil on the windowsill every other day",
       "sew a loose button back onto the blue winter coat", "stir the risotto slowly while adding warm stock"]


class Writer(KeywordGenerator):
    """The keyword teacher that writes inputs: each call answers the next scripted batch."""

    model = "writer"

    def __init__(self, batches: list[list[str]]) -> None:
        super().__init__()
        self.batches = list(batches)
        self.prompts: list[str] = []

    def call_tool(self, messages: list[dict[str, Any]], name: str, schema: dict[str, Any], *, temperature: float = 0.0,
                  max_tokens: int = 512, variant: int = 0, attempts: int = 3) -> dict[str, Any]:
        self.usage.calls += 1
        self.prompts.append(messages[-1]["content"])
        batch = self.batches.pop(0) if self.batches else []
        return {f"input_{i + 1}": x for i, x in enumerate(batch)}


def test_the_teacher_writes_new_inputs_and_the_checks_drop_copies(tmp_path: Path) -> None:
    demo = SPEC.examples[0].input
    writer = Writer([[NEW[0], demo, NEW[0], "x" * 500], [NEW[1], "  ", f"{NEW[1]}!"], [NEW[2], NEW[3]]])
    out = tmp_path / "written.jsonl"
    result = write_inputs(SPEC, writer, out, WriteConfig(n=3), exclude={normalize(NEW[3])})  # type: ignore[arg-type]
    rows = list(read_jsonl(out))
    assert [r["input"] for r in rows] == [NEW[0], NEW[1], NEW[2]] and result.count == 3
    assert all(r["source"] == WRITTEN and r["model"] == "writer" and r["topic"] for r in rows)
    # A demo copy, a repeat, a too-long text, an empty one and a near copy
    # (and a held-out input) were dropped, and the target stops it.
    assert result.dropped["leak"] == 2 and result.dropped["duplicate"] >= 1 and result.dropped["too_long"] == 1
    assert result.llm_calls == 3 and len(writer.prompts) == 3
    # The prompt shows the demos and asks for inputs, never their labels.
    shown = writer.prompts[0].split("Example inputs")[1].split("Write 8 new inputs")[0]
    assert demo in shown and "sport" not in shown and "weather" not in shown
    # A resumed build counts the rows already written: nothing is asked again, and more comes after them.
    again = Writer([[NEW[4], NEW[0]]])
    assert write_inputs(SPEC, again, out, WriteConfig(n=3)).count == 3 and not again.prompts  # type: ignore[arg-type]
    more = write_inputs(SPEC, again, out, WriteConfig(n=4))  # type: ignore[arg-type]
    assert more.count == 4 and [r["input"] for r in read_jsonl(out)][-1] == NEW[4]


def test_a_teacher_that_writes_nothing_new_stops_within_its_call_budget(tmp_path: Path) -> None:
    writer = Writer([[SPEC.examples[0].input]] * 100)
    result = write_inputs(SPEC, writer, tmp_path / "w.jsonl", WriteConfig(n=8, batch_size=4, max_batches_factor=2))  # type: ignore[arg-type]
    assert result.count == 0 and len(writer.prompts) == 4  # 2 batches needed, 2 times over


def test_written_inputs_compete_with_hub_text_by_nearness(tmp_path: Path) -> None:
    from p2m_engine.data.pool import embed_texts

    hub = hub_of_texts(tmp_path)
    demos = [e.input for e in SPEC.examples]
    near = "the midfielder scored a stunning header in the cup derby"
    cake = "whisk the butter and sugar before folding in the flour"
    texts, vecs = collect([hub], demos, written=[near, cake, demos[0]])
    sources = {t.text: t.source for t in texts}
    assert sources[near] == sources[cake] == WRITTEN and demos[0] not in sources  # a demo is never pool text
    # A written input near the demos is taken before hub text; one far from them (a recipe) is not taken at all.
    chosen = [texts[i].text for i in take(texts, vecs, embed_texts(demos), 6)]
    assert chosen[0] == near and cake not in chosen


def test_label_texts_labels_the_written_inputs_with_every_judge(tmp_path: Path) -> None:
    hub = hub_of_texts(tmp_path)
    out = tmp_path / "data" / "labelled.jsonl"
    out.parent.mkdir()
    writer = Writer([NEW[:4], NEW[4:]])
    config = LabelConfig(texts=30, encoder_texts=0, keep=1.0, written=6)  # every text of the pool, judged by all
    result = label_texts(SPEC, [hub], out, config, llm=writer)  # type: ignore[arg-type]
    assert result.written["count"] == 6 and result.written["llm_calls"] == 2
    assert [r["input"] for r in read_jsonl(out.with_name("written.jsonl"))] == NEW
    soft = {r["input"]: r for r in read_jsonl(out.with_name("soft_labels.jsonl"))}
    assert all(soft[x]["hub"] == WRITTEN and soft[x]["judges"] == "all" for x in NEW)
    labelled = {r["input"]: r["output"] for r in read_jsonl(out)}
    assert labelled[NEW[0]] == "sport" and labelled[NEW[1]] == "weather"  # the judges' labels, not the writer's
    assert result.llm_calls == writer.usage.calls and json.dumps(result.to_dict())
    # Switched off (--off written): nothing is written and the teacher is only asked for label scores.
    quiet = Writer([NEW])
    off = label_texts(SPEC, [hub], tmp_path / "off" / "labelled.jsonl", LabelConfig(texts=8, written=0), llm=quiet)  # type: ignore[arg-type]
    assert not quiet.prompts and off.written == {} and not (tmp_path / "off" / "written.jsonl").exists()


def test_a_check_after_the_probe_stops_the_teacher_once(tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def check(texts: list[str]) -> str:
        seen.append(texts)
        return "farther than the hub" if len(seen) == 1 else ""

    writer = Writer([NEW[:2], NEW[2:4], NEW[4:]])
    config = WriteConfig(n=6, batch_size=2, probe=3)
    result = write_inputs(SPEC, writer, tmp_path / "w.jsonl", config, check=check)  # type: ignore[arg-type]
    # Checked once, when the probe's 3 inputs were kept (after the second batch of 2), and stopped there.
    assert seen == [NEW[:4]] and result.count == 4 and result.stopped == "farther than the hub"
    assert len(writer.prompts) == 2
    # A check that lets it go on is asked once and the teacher writes every input.
    seen.clear()
    on = write_inputs(SPEC, Writer([NEW[:2], NEW[2:4], NEW[4:]]), tmp_path / "on.jsonl", config,  # type: ignore[arg-type]
                      check=lambda texts: seen.append(texts) or "")
    assert on.count == 6 and on.stopped == "" and len(seen) == 1
    # A resumed build past the probe is checked before anything is asked.
    again = Writer([NEW[4:]])
    resumed = write_inputs(SPEC, again, tmp_path / "w.jsonl", config, check=lambda texts: "still far")  # type: ignore[arg-type]
    assert resumed.count == 4 and resumed.stopped == "still far" and not again.prompts


def test_nearer_than_compares_the_written_median_with_the_hub_reference() -> None:
    from p2m_engine.data.pool import embed_texts

    queries = embed_texts([e.input for e in SPEC.examples])
    measured: dict[str, float] = {}
    check = nearer_than(queries, 0.3, measured)
    assert check(NEW) == "" and measured["written"] >= 0.3 and measured["hub"] == 0.3
    why = check(FAR[:6])
    assert "below the 0.300" in why and measured["written"] < 0.3


def test_label_texts_stops_writing_inputs_farther_than_the_hub_text(tmp_path: Path) -> None:
    hub = hub_of_texts(tmp_path)
    out = tmp_path / "data" / "labelled.jsonl"
    out.parent.mkdir()
    writer = Writer([FAR[:8], FAR[8:], NEW])
    result = label_texts(SPEC, [hub], out, LabelConfig(texts=30, encoder_texts=0, written=30), llm=writer)  # type: ignore[arg-type]
    # The 16 kitchen lines of the probe are farther from the task than the hub's news sentences: no third batch.
    assert result.written["count"] == 16 and result.written["llm_calls"] == 2 and result.written["stopped"]
    assert result.written["nearness"]["written"] < result.written["nearness"]["hub"]
    assert len(list(read_jsonl(out.with_name("written.jsonl")))) == 16
    # The trace record of label_texts says how many inputs were written and why the teacher stopped.
    from tools.contracts import fold

    record = fold("label_texts", {"labelled": result.count, "written": result.written}, {"task": SPEC.to_dict()}).record
    assert record["written"]["stopped"] == result.written["stopped"] and record["written"]["count"] == 16
