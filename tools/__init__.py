"""Thin LangChain tools over the engine: each calls one engine function, writes to the run folder,
and returns a compact JSON observation (plus an artifact the graph records in its state)."""

from langchain_core.tools import BaseTool

from tools.datasets import search_datasets
from tools.evaluate import evaluate_model
from tools.labelling import label_texts
from tools.models import search_models
from tools.synth import generate_examples, generate_targeted_examples
from tools.train import train_model

TOOLS = [search_datasets, search_models, label_texts, generate_examples, generate_targeted_examples, train_model, evaluate_model]
TOOLS_BY_NAME = {t.name: t for t in TOOLS}


def summary(tool: BaseTool) -> str:
    """What a tool does, for the planner's action list: the first paragraph of its docstring, on one line."""
    return " ".join(tool.description.split("\n\n")[0].split())
