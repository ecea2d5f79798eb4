"""Pair checks calibrated on the demonstrations: copied outputs, repeated demo outputs, inputs of another shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from p2m_engine.data.pair_checks import PairChecks, copy_share, word_share
from p2m_engine.data.pairs import PairsConfig, generate_pairs
from p2m_engine.types import Example, TaskSpec
from tests.fakes import FakeLLM

DIALOGUES = [
    ("#Person1#: Are you coming to the party tonight?\n#Person2#: I can't, I have to finish my report.\n"
     "#Person1#: That's a pity. Maybe next time.", "Person2 cannot come to the party because of a report."),
    ("#Person1#: How much is this jacket?\n#Person2#: It's forty dollars, but it's on sale today.\n"
     "#Person1#: Great, I'll take it.", "Person1 buys a jacket that is on sale."),
]
SUMMARIZE = TaskSpec("Summarize the dialogue in one sentence.", tuple(Example(i, o) for i, o in DIALOGUES), "generation")


def test_copy_share_counts_the_output_3grams_found_in_the_source() -> None:
    assert copy_share("the cat sat on the mat", "yesterday the cat sat on the mat again") == 1.0
    assert copy_share("a dog ran", "the cat sat on the mat") == 0.0
    assert copy_share("", "anything") == 0.0


def test_checks_are_calibrated_on_the_demos() -> None:
    checks = PairChecks.from_demos([i for i, _ in DIALOGUES], [o for _, o in DIALOGUES])
    assert checks.line_range == (3, 3) and checks.max_demo_copy < 0.5
    assert checks.input_problem("#Person1#: Hello there, how are you?") == "input_shape"  # one line for three
    assert checks.input_problem(DIALOGUES[0][0]) is None
    long_input = DIALOGUES[1][0]
    copied = "#Person2#: It's forty dollars, but it's on sale today."
    assert checks.output_problem(long_input, copied) == "output_copies_input"
    assert checks.output_problem(long_input, DIALOGUES[0][1]) == "output_repeats_demo"
    assert checks.output_problem(long_input, "Person1 buys a discounted jacket for forty dollars.") is None
    # An extractive answer is a span: only the repeat check applies.
    assert checks.output_problem(long_input, copied, extractive=True) is None


def test_a_rewriting_task_keeps_outputs_close_to_their_inputs_and_repeating_outputs_are_allowed() -> None:
    rewrite = PairChecks.from_demos(["I walk to the old harbour every morning", "She reads three books in the garden"],
                                    ["I walked to the old harbour every morning", "She read three books in the garden"])
    assert rewrite.output_problem("We sing in the small choir every sunday", "We sang in the small choir every sunday") is None
    assert rewrite.output_problem("We sing in the choir", "we sing in the choir!") == "output_copies_input"
    labels = PairChecks.from_demos(["2 + 2", "1 + 3"], ["4", "4"])  # outputs repeat by nature
    assert labels.demo_outputs == frozenset() and labels.output_problem("3 + 1", "4") is None


def test_an_answer_drawn_from_nowhere_in_its_input_is_dropped_when_every_demo_draws_from_its_own() -> None:
    dated = PairChecks.from_demos(["[Posted: 2013-03-22] The flu season peaked by the end of year.",
                                   "[Posted: 2013-03-22] Evana Roth told CNN in August"],
                                  ["the end of year == 2012", "August == 2012-08"])
    assert dated.min_grounding == 1.0
    assert word_share("August == 2013-08", "I've heard her re-tell them many times.") == 0.0
    assert dated.output_problem("[Posted: 2013-03-22] I've heard her re-tell them many times.",
                                "August == 2013-08") == "output_not_grounded"  # a demo's month, not in the text
    assert dated.output_problem("[Posted: 2013-03-22] Monica is a teacher.", "2013-03-22 | 2013-08") == "output_not_grounded"
    assert dated.output_problem("[Posted: 2013-03-22] The strike ended last Friday.", "last Friday == 2013-03-15") is None
    # Outputs that are not drawn from their inputs (answers computed or written anew): the check is off.
    sums = PairChecks.from_demos(["Tom has 3 apples and buys 2 more.", "A box holds 4 pens; 2 boxes?"], ["5", "8 pens"])
    assert sums.min_grounding == 0.0 and sums.output_problem("Ann has 2 cats and 1 dog.", "three animals") is None
    # A summary takes most of its words from its dialogue: one about something else is dropped.
    talk = PairChecks.from_demos([i for i, _ in DIALOGUES], [o for _, o in DIALOGUES])
    assert talk.min_grounding >= 0.5
    assert talk.output_problem(DIALOGUES[1][0], "Quantum physics explains gravity waves.") == "output_not_grounded"


def test_generation_drops_and_counts_what_the_checks_catch(tmp_path: Path) -> None:
    good = ["#Person1#: Is the library open on {d}?\n#Person2#: Yes, until eight in the evening.\n#Person1#: Thanks, "
            "I will go after work on {d}.".format(d=d) for d in ("monday", "friday", "sunday", "tuesday")]
    one_line = "#Person1#: I love this song so much, it reminds me of summer."

    def answer(messages: list[dict[str, Any]], name: str, i: int) -> dict[str, Any]:
        if name == "write_inputs":
            return {"input_1": one_line, **{f"input_{k + 2}": x for k, x in enumerate(good)}}
        asked = messages[-1]["content"].rsplit("input: ", 1)[-1]
        if "monday" in asked:
            return {"output": "#Person2#: Yes, until eight in the evening."}  # copies the input
        if "friday" in asked:
            return {"output": DIALOGUES[1][1]}  # a demo's summary for another dialogue
        return {"output": "Person1 asks when the library is open and plans to go after work."}

    out = tmp_path / "pairs.jsonl"
    res = generate_pairs(SUMMARIZE, FakeLLM(answer), out, PairsConfig(n=2, votes=1, min_agreement=0.5))  # type: ignore[arg-type]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert res.dropped["input_shape"] >= 1 and res.dropped["output_copies_input"] == 1
    assert res.dropped["output_repeats_demo"] == 1
    assert len(rows) == 2 and all("library" in r["output"] for r in rows)
