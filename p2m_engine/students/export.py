"""Export an encoder student to ONNX (runs with onnxruntime, no torch) and check it against the original."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

from p2m_engine.students import pair_input
from p2m_engine.errors import ModelError

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
OPSET = 18


def export_onnx(model_dir: Path, out_dir: Path | None = None, opset: int = OPSET) -> Path:
    """Write `model.onnx` (inputs input_ids/attention_mask/token_type_ids with dynamic batch and length, output
    logits) and the tokenizer files to `out_dir` (default: model_dir/onnx).

    Only classification students (an encoder with a sequence-classification head) are exported.

    Raises:
        ModelError: not a classification model, or the ONNX tooling (`onnx`, `onnxscript`) is missing.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ModelError(f"ONNX export needs the packages onnx and onnxscript ({e.name} is missing): "
                         "pip install onnx onnxscript") from None
    from p2m_engine.students.probe_student import is_probe_student

    if is_probe_student(model_dir):
        raise ModelError(f"{model_dir} is a frozen-encoder student (a sentence encoder with a linear head in "
                         "p2m_head.safetensors); ONNX export covers fine-tuned classifiers only. It runs with "
                         "`p2m predict` and `p2m serve`.")
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if not any(a.endswith("ForSequenceClassification") for a in config.get("architectures", [])):
        raise ModelError(f"{model_dir} is not a classification student; ONNX export covers encoder classifiers only.")
    out = out_dir or model_dir / "onnx"
    out.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    sample = tok(["an example input", "another one, a little longer"], padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
    batch, length = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("length", min=2, max=4096)
    shapes = {n: {0: batch, 1: length} for n in names}

    class Logits(torch.nn.Module):
        """The classifier with named tensor inputs and a single logits output (a plain ONNX signature)."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, **extra).logits

    path = out / ONNX_FILE
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the exporter's notes on merged dynamic axis names
        torch.onnx.export(Logits(), (), str(path), kwargs={n: sample[n] for n in names}, input_names=names,
                          output_names=["logits"], dynamic_shapes=shapes, opset_version=opset, dynamo=True,
                          external_data=False)
    tok.save_pretrained(str(out))
    pair_input.save(pair_input.load(model_dir), out)  # a pair task's inputs are split the same way there
    (out / "labels.json").write_text(json.dumps(config.get("id2label", {}), ensure_ascii=False), encoding="utf-8")
    return path


def onnx_logits(onnx_dir: Path, texts: list[str], max_length: int = 128) -> Any:
    """Logits of the exported model for `texts`, computed by onnxruntime on the CPU."""
    import numpy as np
    import onnxruntime as ort
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(onnx_dir))
    session = ort.InferenceSession(str(onnx_dir / ONNX_FILE), providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    enc = pair_input.tokenize(tok, texts, pair_input.load(onnx_dir), padding=True, truncation=True, max_length=max_length,
                              return_tensors="np")
    feeds = {k: np.asarray(v, dtype=np.int64) for k, v in enc.items() if k in wanted}
    return session.run(["logits"], feeds)[0]


# Largest absolute logit difference accepted between the export and the torch model.
TOLERANCE = 1e-3


def check_export(model_dir: Path, onnx_dir: Path, texts: tuple[str, ...] = (
        "a short input", "a second, somewhat longer input to check padding and dynamic lengths")) -> float:
    """Compare the export's logits with the torch model's on `texts`; return the largest difference.

    Raises:
        ModelError: the difference exceeds TOLERANCE.
    """
    import torch

    from p2m_engine.students.evaluate import load_classifier

    model, tok = load_classifier(model_dir)
    with torch.inference_mode():
        enc = pair_input.tokenize(tok, list(texts), pair_input.load(model_dir), padding=True, truncation=True,
                                  max_length=128, return_tensors="pt").to(model.device)
        expected = model(**enc).logits.float().cpu().numpy()
    gap = float(abs(onnx_logits(onnx_dir, list(texts)) - expected).max())
    if gap > TOLERANCE:
        raise ModelError(f"The ONNX export differs from the model by {gap:.2e} (tolerance {TOLERANCE}).")
    return gap
