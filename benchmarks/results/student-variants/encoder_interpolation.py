"""Replay: WiSE-FT of the encoder (weights of the contrastive-tuned encoder interpolated with the packaged one),
head fitted as the build does. Usage: python encoder_interpolation.py RUN TASK"""
import json, sys, shutil, tempfile
from pathlib import Path
import numpy as np
from safetensors.numpy import load_file, save_file
from p2m_engine.data.synth import normalize
from p2m_engine.students.embeddings import embed, packaged_minilm_path
from p2m_engine.students.probe_student import ProbeConfig, _fit_head, consistent

RUN, TASK = Path(sys.argv[1]), sys.argv[2]
D = (Path(__file__).resolve().parents[3] / ".." / "shared" / "data") / TASK
labels = tuple(json.loads((RUN / "task.json").read_text())["labels"])
held = {normalize(json.loads(l)["input"]) for l in open(RUN / "data/val.jsonl")}
soft = [r for r in map(json.loads, open(RUN / "data/soft_labels.jsonl")) if normalize(r["input"]) not in held]
texts = [r["input"] for r in soft]; targets = np.stack([np.array([r["probs"].get(l, 0.0) for l in labels]) for r in soft])
targets /= targets.sum(1, keepdims=True)
dev = [json.loads(l) for l in open(D / "dev.jsonl")]
gold = np.array([labels.index(r["output"]) for r in dev])
tuned = RUN / "iterations/1/model"; base = Path(packaged_minilm_path())
A, B = load_file(str(tuned / "model.safetensors")), load_file(str(base / "model.safetensors"))
out = {"task": TASK, "run": str(RUN).split("/runs/")[0].split("/")[-1]}
tmp = Path(tempfile.mkdtemp())
for a in [float(s) for s in (sys.argv[3] if len(sys.argv) > 3 else "0.5").split(",")]:
    enc = tmp / f"a{a}"
    shutil.copytree(tuned, enc)
    save_file({k: ((1 - a) * B[k] + a * A[k]).astype(A[k].dtype) if k in B else A[k] for k in A}, str(enc / "model.safetensors"))
    x = np.asarray(embed(texts, model_path=enc), dtype=np.float32)
    xd = np.asarray(embed([r["input"] for r in dev], model_path=enc), dtype=np.float32)
    keep = consistent(x, targets, ProbeConfig(folds=5))
    W, b, _ = _fit_head(x[keep], targets[keep], np.ones(keep.sum()), ProbeConfig())
    out[f"a{a}"] = round(100 * np.mean((xd @ W.T + b).argmax(1) == gold), 1)
shutil.rmtree(tmp)
print(json.dumps(out))
