"""The data card of a run (`data/README.md`): where the data came from, how much of each label, what the filters
dropped, and a few examples, written from the run folder's splits."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from p2m_engine.data import attributes
from p2m_engine.data.pool import WRITTEN
from p2m_engine.runs import data_file, read_jsonl
from p2m_engine.types import TaskSpec

SPLITS = ("retrieved", "labelled", "generated", "train", "val", "dev", "test")
_MEANING = {
    "retrieved": "real rows taken from the retrieved dataset (training pool)",
    "labelled": "real hub text like the demonstrations, labelled by the judges (teacher label scores, encoder "
                "zero-shot) weighted by their score on the demonstrations (training pool)",
    "generated": "rows the teacher LLM wrote (training pool)",
    "train": "what the student trained on (retrieved + generated, deduplicated, held-out inputs removed)",
    "val": "held back from the training pool to pick the best epoch (and to decide on when there is no dev)",
    "dev": "real rows held out of the retrieved dataset; the build's decisions are made on them",
    "test": "real rows held out of the retrieved dataset for the reported score (when no test file was given)",
}


def _rows(path: Path) -> list[dict[str, Any]]:
    return list(read_jsonl(path)) if path.is_file() else []


def _cell(text: Any, limit: int = 160) -> str:
    """A table-safe, shortened rendering of a data value (data is untrusted: no raw pipes or backticks)."""
    s = " ".join(str(text).split())
    s = s if len(s) <= limit else s[: limit - 1] + "…"
    return s.replace("|", "\\|").replace("`", "'")


def data_card(run_dir: Path, spec: TaskSpec, *, dataset: str | None, dropped: dict[str, int],
              examples_per_label: int = 2, skipped: int = 0, malformed: list[str] | tuple[str, ...] = ()) -> str:
    """The data card text of the run in `run_dir`.

    Args:
        run_dir: the run folder (its `data/` splits are read).
        spec: the task.
        dataset: the retrieved dataset's name, if any.
        dropped: generated candidates dropped, by filter, over the whole build.
        skipped: malformed lines of the retrieved dataset's files that were left out.
        malformed: the first of them, as `file:line: problem`.
        examples_per_label: training examples shown per label (or in all, for tasks without labels).
    """
    data = {name: _rows(data_file(run_dir, name)) for name in SPLITS}
    generated = data["generated"]
    targeted = sum(1 for r in generated if r.get("targeted"))
    models = sorted({str(r.get("model")) for r in generated if r.get("model")})
    temps = [float(t) for r in generated if isinstance(t := r.get("temperature"), (int, float))]
    lines = [f"# Data card: {_cell(spec.instruction.splitlines()[0], 100)}", "", "## Sources", ""]
    lines.append(f"- **Retrieved**: {len(data['retrieved'])} rows from `{_cell(dataset)}`" if dataset
                 else "- **Retrieved**: none (no hub dataset fitted the task)")
    if skipped:
        lines.append(f"- **Skipped**: {skipped} malformed line(s) of the retrieved dataset's files were left out"
                     + "".join(f"\n  - `{_cell(m, 160)}`" for m in list(malformed)[:5]))
    labelled = data["labelled"]
    if labelled:
        hubs = Counter(str(r.get("hub", "")).split("/")[0] for r in labelled)
        lines.append(f"- **Teacher-labelled** (real hub text, labelled by the judges): {len(labelled)} rows from "
                     + ", ".join(f"`{_cell(h, 40)}` ({n})" for h, n in hubs.most_common(6)))
    soft = _rows(data_file(run_dir, "soft_labels"))
    if soft:
        by_judges = Counter(str(r.get("judges")) for r in soft)
        wrote = sum(1 for r in soft if r.get("hub") == WRITTEN)
        lines.append(f"- **Soft-labelled** (`soft_labels.jsonl`): {len(soft)} hub texts with every label's probability "
                     f"from the judges ({by_judges.get('all', 0)} by all judges, {by_judges.get('encoder', 0)} by the "
                     "encoder judges alone); a frozen-encoder student trains on these probabilities"
                     + (f". {wrote} of the texts are inputs the teacher wrote like the demonstrations "
                        "(`written.jsonl`, without labels), taken by their nearness to the task like hub text"
                        if wrote else ""))
    cloze = _rows(data_file(run_dir, "cloze"))
    if cloze:
        lines.append(f"- **Cloze** (`cloze.jsonl`): {len(cloze)} questions made from hub passages without the teacher "
                     "(a span of a sentence is the answer; the sentence without it, scrambled, the question); the "
                     "span head trains on them beside the training split; the task's own rows validate when there are enough")
    if generated:
        span = f", temperature {min(temps):.2f} to {max(temps):.2f}" if temps else ""
        lines.append(f"- **Generated**: {len(generated)} rows by {', '.join(f'`{m}`' for m in models) or 'the teacher'}"
                     f"{span}; {targeted} of them targeted at weak labels")
    else:
        lines.append("- **Generated**: none")
    lines += [f"- **Demonstrations**: {len(spec.examples)} from the prompt (never trained on; scored apart)", ""]
    if spec.label_descriptions:
        # Labels the user described (e.g. added in chat without demonstrations): what the teacher was told they mean.
        lines += ["## Label descriptions", "", "| label | description |", "|---|---|",
                  *[f"| {_cell(k, 40)} | {_cell(v, 200)} |" for k, v in spec.label_descriptions.items()], ""]
    present = [name for name in SPLITS if data[name]]
    lines += ["## Counts", "", "| " + " | ".join(["label", *present]) + " |", "|" + "---|" * (len(present) + 1)]
    counts = {name: Counter(str(r.get("output")) for r in data[name]) for name in present}
    for label in (spec.labels or ("all",)):
        row = [str(sum(counts[n].values()) if label == "all" else counts[n].get(label, 0)) for n in present]
        lines.append(f"| {_cell(label, 40)} | " + " | ".join(row) + " |")
    lines += ["", *[f"- `{n}`: {_MEANING[n]}" for n in present], "", "## Filters", ""]
    if dropped:
        lines += ["Generated candidates dropped, by filter (an input can be dropped once):", "",
                  "| filter | dropped |", "|---|---|",
                  *[f"| {k} | {v} |" for k, v in sorted(dropped.items(), key=lambda x: -x[1])]]
    else:
        lines.append("No generated candidate was dropped.")
    if generated:
        topics = {r.get("topic") for r in generated if r.get("topic")}
        lines += ["", f"Diversity of the generated inputs: distinct-2 {attributes.distinct_ngrams(str(r.get('input')) for r in generated):.3f} "
                      f"(unique word pairs over all), {attributes.duplicate_rate(len(generated), dropped):.1%} of the candidates "
                      f"dropped as copies" + (f"; batches written about {len(topics)} sampled topics" if topics else "") + "."]
    lines += ["", "## Examples (training data)", "", "| source | input | output |", "|---|---|---|"]
    source = {str(r.get("input")): name for name in ("retrieved", "labelled", "generated") for r in data[name]}
    shown: Counter[str] = Counter()
    for r in data["train"]:
        # One per label and source first (a real and a generated row side by side), then up to the limit.
        label = str(r.get("output")) if spec.labels else "all"
        key = f"{label}\0{source.get(str(r.get('input')), '')}"
        if shown[key] < 1 and shown[label] < examples_per_label:
            shown.update([key, label])
            lines.append(f"| {_cell(source.get(str(r.get('input')), ''), 20)} | {_cell(r.get('input'))} | {_cell(r.get('output'), 80)} |")
    return "\n".join(lines) + "\n"


def write_data_card(run_dir: Path, spec: TaskSpec, *, dataset: str | None, dropped: dict[str, int], skipped: int = 0,
                    malformed: list[str] | tuple[str, ...] = ()) -> Path:
    """Write `run_dir/data/README.md` (rewritten as the build goes on) and return its path."""
    path = run_dir / "data" / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data_card(run_dir, spec, dataset=dataset, dropped=dropped, skipped=skipped, malformed=malformed),
                    encoding="utf-8")
    return path
