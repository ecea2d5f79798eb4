"""Tool: label real hub text like the demonstrations with the judges a small teacher can be trusted with."""

from __future__ import annotations

import dataclasses
from typing import Any

from langchain_core.tools import tool
from langgraph.prebuilt import ToolRuntime

from p2m_engine.data.labelling import label_texts as label_engine
from p2m_engine.data.synth import normalize
from p2m_engine.types import generation_total
from tools.context import Meter, ToolContext, observation
from tools.contracts import StateView
from tools.synth import held_out_inputs, real_per_label


@tool(response_format="content_and_artifact")
def label_texts(runtime: ToolRuntime) -> tuple[str, dict[str, Any]]:
    """Label real hub text like the demonstrations, when no labelled dataset fits: with the teacher's label
    scores and the encoder's zero-shot judgement (classification), or with the teacher's answer (other tasks).

    The hub texts (and the user's own unlabelled inputs, when given, else inputs the teacher writes like the
    demonstrations, without labels) most like the demonstrations (questions for a question task, reviews for a
    review task) are labelled by judges weighted by how well each predicts the demonstrations: the teacher scoring each
    label by log-probability (calibrated), and the sentence encoder's similarity to each label's name.
    Only the confident rows are kept, as training data with provenance `teacher_labelled`. For a task without
    labels each text is put in the demonstrations' input shape and answered by the teacher; these pairs take
    the place of pairs generate_examples would write.

    Returns the count (per label), the weight and demonstration score of every judge, where the texts came
    from, and why texts were dropped.
    """
    ctx: ToolContext = runtime.context
    meter = Meter(ctx.llm)
    spec = StateView.of(runtime.state).task
    config = ctx.labelling
    if not spec.labels:  # the hub's pairs replace generated ones: no more than generation would write
        config = dataclasses.replace(config, texts=min(config.texts, generation_total(ctx.synth.per_label)))
    result = label_engine(spec, ctx.hub_dirs, ctx.run.data("labelled"), config, llm=ctx.llm,
                          exclude={normalize(x) for x in held_out_inputs(ctx)}, progress=ctx.report("label_texts"),
                          unlabelled=ctx.unlabelled)
    # What generation may skip: the kept rows, or with soft labels every text under its most probable label.
    artifact = {"labelled": result.count, **result.to_dict(),
                "real_per_label": real_per_label(ctx) if spec.labels else {}, **meter.figures()}
    shown = (("labelled", "soft", "per_label", "weights", "judges", "sources", "written") if spec.labels
             else ("labelled", "sources", "dropped"))
    return observation({k: artifact[k] for k in shown}), artifact
