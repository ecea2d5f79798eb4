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
    assert checks.input_problem("#Person1#: Is it raining?\n#Person2#: Not yet.\n#Person1#: Good, let's walk.") is None
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
    good = [["#Person1#: Is the library open on {d}?".format(d=d), "#Person2#: Yes, until eight in the evening.",
             "#Person1#: Thanks, I will go after work on {d}.".format(d=d)] for d in ("monday", "friday", "sunday", "tuesday")]
    # The demos have 3 lines, so inputs are written line by line; a "line" holding seven more is of another shape.
    too_long = ["#Person1#: I love this song.", "#Person2#: Me too.\n" * 7, "#Person1#: It reminds me of summer."]

    def answer(messages: list[dict[str, Any]], name: str, i: int) -> dict[str, Any]:
        if name == "write_inputs":
            return {f"input_{k + 1}_line_{j + 1}": line for k, x in enumerate([too_long, *good]) for j, line in enumerate(x)}
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


def test_inputs_of_several_lines_are_written_line_by_line(tmp_path: Path) -> None:
    # Asked for whole, the small teacher wrote one-line "dialogues"; asked for the demos' fewest lines as fields,
    # it must write every turn. One answer misses a line and is skipped.
    from p2m_engine.data.pairs import input_lines

    assert input_lines([i for i, _ in DIALOGUES]) == 3 and input_lines(["one line", "two\nlines"]) == 0
    turns = [["#Person1#: Can I borrow your bike on monday?", "#Person2#: Sure, bring it back by noon.",
              "#Person1#: Thank you, I will."],
             ["#Person1#: Did you see the storm last night over the harbour?", "#Person2#: No, I slept right through it.",
              "#Person1#: Three boats broke loose and drifted onto the beach."]]

    def answer(messages: list[dict[str, Any]], name: str, i: int) -> dict[str, Any]:
        if name == "write_inputs":
            lines = {f"input_{k + 1}_line_{j + 1}": line for k, x in enumerate(turns) for j, line in enumerate(x)}
            return {**lines, "input_3_line_1": "#Person1#: Hello?", "input_3_line_2": "#Person2#: Hi."}
        asked = messages[-1]["content"]
        return {"output": "Person1 borrows Person2's bike until noon." if "bike" in asked else
                "Person1 tells Person2 that the storm drifted three boats onto the beach."}

    llm = FakeLLM(answer)
    out = tmp_path / "pairs.jsonl"
    generate_pairs(SUMMARIZE, llm, out, PairsConfig(n=2, votes=1, min_agreement=0.5, batch_size=3))  # type: ignore[arg-type]
    asked = next(r for r in llm.requests if r["name"] == "write_inputs")
    assert set(asked["schema"]["required"]) == {f"input_{k}_line_{j}" for k in (1, 2, 3) for j in (1, 2, 3)}
    assert all(field["minLength"] >= 1 for field in asked["schema"]["properties"].values())  # no empty turn
    assert "3 lines" in asked["messages"][-1]["content"]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["input"] for r in rows] == ["\n".join(x) for x in turns]


def test_an_output_pieced_together_from_the_demo_outputs_is_a_repeat() -> None:
    code = PairChecks.from_demos(
        ["save current figure to file 'graph.png' with resolution of 1000 dpi", "convert binary string '0101' to integer",
         "insert a list `k` at the front of list `a`"],
        ["plt.savefig('graph.png', dpi=1000)", "int('0101', 2)", "a.insert(0, k)"])
    review = "the movie mode can only record a max of 30 seconds per clip ."
    # What the 0.5B teacher wrote for 37 hub texts: the demos' outputs strung together.
    assert code.output_problem(review, "plt.savefig('graph.png', dpi=1000), int('0101', 2), a.insert(0, k)}") \
        == "output_repeats_demo"
    # New code that shares a call with a demo is kept; so is one drawn from its own input, and a short answer.
    assert code.output_problem("save the plot to 'out.png'", "plt.savefig('out.png')") is None
    assert code.output_problem("call a.insert(0, k) twice", "a.insert(0, k); a.insert(0, k)") is None
    assert code.output_problem(review, "int(x)") is None


def test_a_dialogue_made_of_the_demos_lines_is_a_copy() -> None:
    checks = PairChecks.from_demos([i for i, _ in DIALOGUES], [o for _, o in DIALOGUES])
    # The demos' turns reshuffled, markers dropped or changed: what the 0.5B teacher wrote line by line.
    reshuffled = ("#Person1#: How much is this jacket?\nI can't, I have to finish my report.\n"
                  "#Person2#: That's a pity. Maybe next time.\nWhat time does it start?")
    assert checks.input_problem(reshuffled) == "input_copies_demo_lines"
    fresh = ("#Person1#: Did the train leave already?\n#Person2#: Five minutes ago, sorry.\n"
             "#Person1#: Then I will take the bus. Great, I'll take it.")
    assert checks.input_problem(fresh) is None  # one borrowed phrase inside a new turn is not a copied line
    # Demos of one line: lines are not compared.
    single = PairChecks.from_demos(["How much is this jacket?", "Where is the station?"], ["price", "place"])
    assert single.demo_lines == frozenset() and single.input_problem("How much is this jacket?") is None


def test_lines_every_demo_shares_are_not_copies() -> None:
    # A database schema every demo carries is kept by design; only the question line is the input's own.
    schema = "Database: shop\nTables:\nitem(Item_ID, Name, Price)\norder(Order_ID, Item_ID, Day)"
    checks = PairChecks.from_demos([schema + "\nQuestion: How many items are there?",
                                    schema + "\nQuestion: What is the name of the cheapest item?"],
                                   ["SELECT count(*) FROM item", "SELECT Name FROM item ORDER BY Price LIMIT 1"])
    assert checks.input_problem(schema + "\nQuestion: Which day had the most orders?") is None
    assert checks.input_problem(schema + "\nQuestion: How many items are there?") == "input_copies_demo_lines"
