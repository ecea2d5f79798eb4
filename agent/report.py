"""The decision trace as one self-contained HTML page: what was decided, what it cost, what the model learned.

Everything comes from the run folder (trace.jsonl, task.json, summary.json, metrics.json, data/*.jsonl,
predictions/*.jsonl). The page has no external assets: CSS and charts (SVG) are inline, there is no
script, and a Content-Security-Policy forbids scripts, so text from an LLM, a dataset or a user (all of it
escaped by the template's autoescaping) can never run in the reader's browser.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import jinja2

from agent.trace import read_trace
from p2m_engine.errors import P2MError
from p2m_engine.eval.metrics import confusion_matrix
from p2m_engine.runs import data_file, read_jsonl

logger = logging.getLogger(__name__)

TEMPLATE = "report.html.j2"
MAX_ERRORS = 25
"""Error examples shown per split (the most confident mistakes first)."""
MAX_SAMPLES = 3
"""Generated examples shown per label."""

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _seconds(ms: Any) -> str:
    s = float(ms or 0) / 1000
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def _clock(at: Any) -> str:
    """'2026-11-25T09:02:59+0000' -> '09:02:59' (the date is in the header)."""
    text = str(at or "")
    return text[11:19] if len(text) >= 19 else text


_env.filters["seconds"] = _seconds
_env.filters["clock"] = _clock


def _read_json(path: Path) -> Any:
    """A JSON file's content, or None when it is missing or unreadable (the page says so)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        logger.warning("cannot read %s: %s", path, e)
        return None


def _rows(path: Path) -> list[dict[str, Any]]:
    return list(read_jsonl(path)) if path.is_file() else []


def _label_order(task_labels: list[str], *seen: Any) -> list[str]:
    """The task's labels in their own order, then any other label found in the files, sorted."""
    extra: set[str] = set()
    for labels in seen:
        extra |= {str(x) for x in labels}
    return list(dict.fromkeys(task_labels)) + sorted(extra - set(task_labels))


def label_distribution(run_dir: Path, task_labels: list[str]) -> dict[str, Any]:
    """Training examples per label and source (retrieved, generated), with the bars of a stacked chart.

    Returns:
        rows (label, retrieved, generated, trained, total), totals, the dataset and model names the rows
        name as their source, a few generated examples per label, and chart geometry.
    """
    retrieved, generated = _rows(data_file(run_dir, "retrieved")), _rows(data_file(run_dir, "generated"))
    trained = _rows(data_file(run_dir, "train")) + _rows(data_file(run_dir, "val"))
    counts = {name: Counter(str(r.get("output", "")) for r in rows)
              for name, rows in (("retrieved", retrieved), ("generated", generated), ("trained", trained))}
    labels = _label_order(task_labels, counts["retrieved"], counts["generated"])
    rows = [{"label": lb, "retrieved": counts["retrieved"][lb], "generated": counts["generated"][lb],
             "trained": counts["trained"][lb], "total": counts["retrieved"][lb] + counts["generated"][lb]}
            for lb in labels]
    samples: dict[str, list[str]] = {}
    for r in generated:
        bucket = samples.setdefault(str(r.get("output", "")), [])
        if len(bucket) < MAX_SAMPLES:
            bucket.append(str(r.get("input", "")))
    # Chart: one stacked bar per label, scaled to the largest total.
    width, left, right, row_h = 640, 170, 70, 26
    top = max([r["total"] for r in rows] + [1])
    scale = (width - left - right) / top
    bars = []
    for i, r in enumerate(rows):
        rw, gw = r["retrieved"] * scale, r["generated"] * scale
        bars.append({**r, "y": 8 + i * row_h, "rw": round(rw, 1), "gx": round(left + rw, 1), "gw": round(gw, 1),
                     "end": round(left + rw + gw + 6, 1), "short": r["label"] if len(r["label"]) <= 22 else r["label"][:21] + "…"})
    return {
        "rows": rows,
        "totals": {k: sum(r[k] for r in rows) for k in ("retrieved", "generated", "trained", "total")},
        "has_trained": bool(trained),
        "datasets": sorted({str(r.get("source")) for r in retrieved if r.get("source")}),
        "teachers": sorted({str(r.get("model")) for r in generated if r.get("model")}),
        "samples": [(lb, samples[lb]) for lb in labels if lb in samples], "max_samples": MAX_SAMPLES,
        "chart": {"width": width, "height": 16 + len(rows) * row_h, "left": left, "bars": bars},
    }


def prediction_splits(run_dir: Path, task_labels: list[str]) -> list[dict[str, Any]]:
    """One entry per predictions/<split>.jsonl: confusion matrix, accuracy and the worst errors.

    The test split comes first, then the demonstrations, then any other split by name.
    """
    folder = run_dir / "predictions"
    paths = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    paths.sort(key=lambda p: ({"test": 0, "demos": 1}.get(p.stem, 2), p.stem))
    out = []
    for path in paths:
        rows = _rows(path)
        gold = [str(r.get("gold", "")) for r in rows]
        pred = [str(r.get("prediction", "")) for r in rows]
        order, matrix = confusion_matrix(gold, pred, _label_order(task_labels, gold))
        cells = []
        for i, row in enumerate(matrix):
            total = sum(row)
            cells.append([{"count": c, "alpha": round(c / total, 3) if total else 0.0, "hit": i == j}
                          for j, c in enumerate(row)])
        errors = [r for r, g, p in zip(rows, gold, pred) if g != p]
        errors.sort(key=lambda r: -float(r.get("probability") or 0))
        majority = Counter(gold).most_common(1)
        out.append({
            "split": path.stem, "n": len(rows), "correct": len(rows) - len(errors),
            "accuracy": (len(rows) - len(errors)) / len(rows) if rows else None,
            "majority": majority[0][1] / len(rows) if majority else None,
            "labels": order, "matrix": list(zip(order, cells, (sum(r) for r in matrix))),
            "errors": [{k: r.get(k, "") for k in ("input", "gold", "prediction", "probability")} for r in errors[:MAX_ERRORS]],
            "n_errors": len(errors),
        })
    return out


def _json_field(text: Any, key: str) -> Any:
    """A field of a tool observation (JSON text, possibly truncated); None when it cannot be read."""
    try:
        obj = json.loads(str(text))
    except json.JSONDecodeError:
        return None
    return obj.get(key) if isinstance(obj, dict) else None


def score_curve(events: list[dict[str, Any]], majority: float | None) -> dict[str, Any]:
    """Scores over the build's steps: each evaluation's score and each training's validation score (held-back training rows).

    Returns:
        series (name, css class, points with x/y pixel positions and values), axis ticks, and the
        majority-class share of the test split as a reference line (None when unknown).
    """
    width, height, left, right, top, bottom, inset = 640, 250, 52, 24, 18, 44, 36
    pw, ph = width - left - right, height - top - bottom
    raw: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for e in events:
        if e.get("kind") != "tool" or not e.get("ok"):
            continue
        if e.get("name") == "evaluate_model" and isinstance(e.get("score"), (int, float)):
            split = str(e.get("score_split") or "test")
            raw.setdefault((f"accuracy on {split}", "s-eval"), []).append((int(e.get("step", 0)), float(e["score"])))
        elif e.get("name") == "train_model":
            val = _json_field(e.get("output_summary"), "val_score")
            if isinstance(val, (int, float)):
                raw.setdefault(("validation score", "s-val"), []).append((int(e.get("step", 0)), float(val)))
    steps = sorted({s for pts in raw.values() for s, _ in pts})
    lo, hi = (steps[0], steps[-1]) if steps else (0, 0)

    def x_of(step: int) -> float:
        # Points keep `inset` pixels from both ends, so that their value labels stay inside the chart.
        return round(left + (pw / 2 if hi == lo else inset + (step - lo) / (hi - lo) * (pw - 2 * inset)), 1)

    def y_of(v: float) -> float:
        return round(top + (1 - max(0.0, min(1.0, v))) * ph, 1)

    series = []
    for (name, css), pts in raw.items():
        points = [{"x": x_of(s), "y": y_of(v), "value": v, "step": s} for s, v in pts]
        series.append({"name": name, "css": css, "points": points,
                       "polyline": " ".join(f"{p['x']},{p['y']}" for p in points)})
    return {
        "width": width, "height": height, "left": left, "right": width - right, "top": top, "bottom": top + ph,
        "series": series, "yticks": [{"y": y_of(v), "label": f"{v:.2f}"} for v in (0, 0.25, 0.5, 0.75, 1.0)],
        "xticks": [{"x": x_of(s), "label": f"step {s}"} for s in steps],
        "majority": None if majority is None else {"y": y_of(majority), "value": majority},
    }


def final_score(events: list[dict[str, Any]], metrics: Any) -> dict[str, Any] | None:
    """The build's score: accuracy on the split the last evaluation scored (from metrics.json).

    Falls back to the score in the trace's finish event when metrics.json is missing.
    """
    evals = [e for e in events if e.get("kind") == "tool" and e.get("name") == "evaluate_model" and e.get("ok")]
    split = str(evals[-1].get("score_split") or "") if evals else ""
    if isinstance(metrics, dict):
        split = split or ("test" if "test" in metrics else "demos")
        rep = metrics.get(split)
        if isinstance(rep, dict) and isinstance(rep.get("metrics"), dict) and "accuracy" in rep["metrics"]:
            return {"value": float(rep["metrics"]["accuracy"]), "split": split, "n": rep.get("n"), "source": "metrics.json"}
    finish = [e for e in events if e.get("kind") == "finish" and isinstance(e.get("score"), (int, float))]
    if finish:
        return {"value": float(finish[-1]["score"]), "split": split or "?", "n": None, "source": "trace"}
    return None


_EVENT_DEFAULTS: dict[str, Any] = {
    "kind": "", "name": "", "step": "", "at": "", "node": "", "reason": "", "decided_by": "", "allowed": [],
    "state": {}, "duration_ms": 0, "tokens_in": 0, "tokens_out": 0, "ok": False, "output_summary": "",
    "error": "", "llm_calls": 0, "tokens": 0, "candidates": [], "dropped": {}, "stopped_labels": [], "stop_reason": "",
    "score": None, "score_split": "", "model_dir": None, "args": {}, "args_by": "", "clipped": {},
}


def _event(e: dict[str, Any]) -> dict[str, Any]:
    """A trace event with every field the page reads (older or partial events lack some)."""
    out = {**_EVENT_DEFAULTS, **{k: v for k, v in e.items() if v is not None or k == "score"}}
    out["candidates"] = [c for c in out["candidates"] if isinstance(c, dict)] if isinstance(out["candidates"], list) else []
    for key, kind in (("allowed", list), ("state", dict), ("dropped", dict), ("stopped_labels", list), ("args", dict),
                      ("clipped", dict)):
        if not isinstance(out[key], kind):
            out[key] = kind()
    return out


def _candidate(c: dict[str, Any]) -> dict[str, Any]:
    return {"name": c.get("name", ""), "score": c.get("score", ""), "reason": c.get("reason", "")}


def report_context(run_dir: Path) -> dict[str, Any]:
    """Everything the page shows, read from the run folder.

    Raises:
        P2MError: the folder holds no trace.
    """
    events = read_trace(run_dir)
    if not events:
        raise P2MError(f"No trace in {run_dir}.")
    task = _read_json(run_dir / "task.json") or {}
    summary = _read_json(run_dir / "summary.json") or {}
    metrics = _read_json(run_dir / "metrics.json")
    labels = [str(x) for x in task.get("labels") or []]
    finish = next((e for e in reversed(events) if e.get("kind") == "finish"), {})
    splits = prediction_splits(run_dir, labels)
    test = next((s for s in splits if s["split"] == "test"), None)
    tools = [e for e in events if e.get("kind") == "tool"]
    decisions = [e for e in events if e.get("kind") == "decision"]
    metric_rows = [{"split": k, "n": v.get("n"), "accuracy": (v.get("metrics") or {}).get("accuracy"),
                    "macro_f1": (v.get("metrics") or {}).get("macro_f1"), "recall": v.get("per_label_recall") or {}}
                   for k, v in (metrics or {}).items() if isinstance(v, dict)]
    return {
        "run_id": str(events[0].get("run_id") or run_dir.name),
        "run_dir": str(run_dir),
        "started": str(events[0].get("at", "")),
        "task": {"instruction": str(task.get("instruction", "")), "labels": labels,
                 "task_type": str(task.get("task_type", "")), "examples": [{"input": str(x.get("input", "")), "output": str(x.get("output", ""))}
                              for x in task.get("examples") or [] if isinstance(x, dict)]},
        "finish_reason": finish.get("reason") or summary.get("finish_reason"),
        "model_dir": finish.get("model_dir") or summary.get("model_dir"),
        "summary": {k: summary.get(k) for k in ("base_model", "teacher", "wall_s")},
        "score": final_score(events, metrics),
        "events": [{**ev, "candidates": [_candidate(c) for c in ev["candidates"]]} for ev in map(_event, events)],
        "totals": {
            "decisions": len(decisions), "tools": len(tools), "errors": sum(1 for e in tools if not e.get("ok")),
            "tool_ms": sum(int(e.get("duration_ms") or 0) for e in tools),
            "llm_calls": sum(int(e.get("llm_calls") or 0) for e in tools),
            "tokens": sum(int(e.get("tokens") or 0) for e in tools)
            + sum(int(e.get("tokens_in") or 0) + int(e.get("tokens_out") or 0) for e in decisions),
        },
        "curve": score_curve(events, test["majority"] if test else None),
        "data": label_distribution(run_dir, labels),
        "splits": splits,
        "metrics": metric_rows,
        "metrics_extra": {k: v for k, v in (metrics or {}).items() if not isinstance(v, dict)},
        "metrics_missing": metrics is None,
    }


def render_report(run_dir: Path) -> str:
    """The HTML page of a run (a string; see `write_report`).

    Raises:
        P2MError: the folder holds no trace.
    """
    return _env.get_template(TEMPLATE).render(**report_context(run_dir))


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the run's HTML page to `out` (default: RUN/trace.html) and return its path.

    Raises:
        P2MError: the folder holds no trace, or `out` cannot be written.
    """
    html = render_report(run_dir)
    target = out or run_dir / "trace.html"
    try:
        target.write_text(html, encoding="utf-8")
    except OSError as e:
        raise P2MError(f"Cannot write {target}: {e.strerror}.") from e
    return target
