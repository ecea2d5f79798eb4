"""Replay: weight of the rows only the encoder judges labelled, against the rows every judge labelled.
Usage: python row_weights.py RUN TASK"""
import json, sys
from pathlib import Path
import numpy as np
from p2m_engine.data.synth import normalize
from p2m_engine.students.embeddings import embed
from p2m_engine.students.probe_student import ProbeConfig, _fit_head, consistent

RUN, TASK = Path(sys.argv[1]), sys.argv[2]
D = (Path(__file__).resolve().parents[3] / ".." / "shared" / "data") / TASK
labels = tuple(json.loads((RUN / "task.json").read_text())["labels"])
held = {normalize(json.loads(l)["input"]) for l in open(RUN / "data/val.jsonl")}
soft = [r for r in map(json.loads, open(RUN / "data/soft_labels.jsonl")) if normalize(r["input"]) not in held]
texts = [r["input"] for r in soft]; rows = [np.array([r["probs"].get(l, 0.0) for l in labels]) for r in soft]
kind = [r.get("judges", "all") for r in soft]
seen = {normalize(t) for t in texts}
for r in map(json.loads, open(RUN / "data/train.jsonl")):
    if normalize(r["input"]) not in seen and r["output"] in labels:
        texts.append(r["input"]); rows.append(np.eye(len(labels))[labels.index(r["output"])]); kind.append("fixed")
targets = np.stack([p / p.sum() for p in rows]); kind = np.array(kind)
enc = RUN / "iterations/1/model"
x = np.asarray(embed(texts, model_path=enc), dtype=np.float32)
dev = [json.loads(l) for l in open(D / "dev.jsonl")]
xd = np.asarray(embed([r["input"] for r in dev], model_path=enc), dtype=np.float32)
gold = np.array([labels.index(r["output"]) for r in dev])
cfg = ProbeConfig()
keep = consistent(x, targets, ProbeConfig(folds=5)) | (kind == "fixed")
def acc(w):
    W, b, _ = _fit_head(x[keep], targets[keep], w[keep], cfg)
    return round(100 * np.mean((xd @ W.T + b).argmax(1) == gold), 1)
out = {"task": TASK, "run": str(RUN).split("/runs/")[0].split("/")[-1], "n": {k: int(((kind == k) & keep).sum()) for k in ("all", "encoder", "fixed")}}
for we in (1.0, 0.5, 0.25, 0.0):
    out[f"enc{we}"] = acc(np.where(kind == "encoder", we, 1.0))
# teacher-judged rows upweighted to match the encoder rows' total
n_all, n_enc = ((kind != "encoder") & keep).sum(), ((kind == "encoder") & keep).sum()
out["balanced"] = acc(np.where(kind == "encoder", 1.0, n_enc / max(n_all, 1)))
print(json.dumps(out))
