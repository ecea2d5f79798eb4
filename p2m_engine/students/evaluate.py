"""Score a trained student on labelled examples; save every prediction for failure analysis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from p2m_engine.students import pair_input, probe_student
from p2m_engine.eval.metrics import classification_metrics, per_label_recall
from p2m_engine.runs import write_jsonl
from p2m_engine.types import EvalReport, Example


def load_classifier(model_dir: Path) -> tuple[Any, Any]:
    """Load a saved student (model, tokenizer) for inference on CPU or GPU; a frozen-encoder student
    (p2m_engine.students.probe_student) loads as (ProbeClassifier, None)."""
    import torch

    if probe_student.is_probe_student(model_dir):
        return probe_student.ProbeClassifier(model_dir), None
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    return model, tok


def predict(model_dir: Path, texts: list[str], batch_size: int = 32, max_length: int = 128,
            loaded: tuple[Any, Any] | None = None) -> list[tuple[str, float]]:
    """Label each text; returns (label, probability) pairs."""
    import torch

    if probe_student.is_probe_student(model_dir):
        return probe_student.predict_probe(model_dir, texts, loaded[0] if loaded else None)
    model, tok = loaded or load_classifier(model_dir)
    pair = pair_input.load(model_dir)
    out: list[tuple[str, float]] = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = pair_input.tokenize(tok, texts[i : i + batch_size], pair, truncation=True, max_length=max_length,
                                      padding=True, return_tensors="pt")
            enc = {k: v.to(model.device) for k, v in enc.items()}
            probs = model(**enc).logits.float().softmax(-1)
            p, idx = probs.max(-1)
            out += [(model.config.id2label[int(j)], float(q)) for j, q in zip(idx, p)]
    return out


def evaluate_classifier(model_dir: Path, examples: list[Example], split: str, predictions_path: Path | None = None) -> EvalReport:
    """Accuracy, macro-F1 and per-label recall of the student on `examples`.

    Args:
        model_dir: the saved student.
        examples: labelled examples the model never trained on.
        split: a name for the report ("test", "demos", "val").
        predictions_path: where to write one JSON line per example (input, gold, prediction, probability).
    """
    preds = predict(model_dir, [e.input for e in examples])
    gold = [e.output for e in examples]
    labels = [p for p, _ in preds]
    if predictions_path:
        write_jsonl(predictions_path, ({"input": e.input, "gold": e.output, "prediction": p, "probability": round(q, 4),
                                        "correct": e.output == p} for e, (p, q) in zip(examples, preds)))
    return EvalReport(split, len(examples), classification_metrics(gold, labels), per_label_recall(gold, labels),
                      predictions_path)
