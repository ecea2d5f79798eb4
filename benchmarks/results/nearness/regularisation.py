"""Replay: the nearness weights with the head's weight decay raised, and with the texts no judge labelled (uniform soft
labels) dropped (`near_inf_*`). Usage: python regularisation.py RUN TASK"""
import json, sys
from pathlib import Path
import numpy as np
from p2m_engine.data.synth import normalize
from p2m_engine.data import pool
from p2m_engine.data.labelling import label_queries
from p2m_engine.types import TaskSpec
from p2m_engine.students.embeddings import embed
from p2m_engine.students.probe_student import ProbeConfig, _fit_head, consistent

RUN, TASK = Path(sys.argv[1]), sys.argv[2]
D = (Path(__file__).resolve().parents[3] / ".." / "shared" / "data") / TASK
spec = TaskSpec.from_dict(json.loads((RUN / "task.json").read_text()))
labels = tuple(spec.labels)
held = {normalize(json.loads(l)["input"]) for l in open(RUN / "data/val.jsonl")}
soft = [r for r in map(json.loads, open(RUN / "data/soft_labels.jsonl")) if normalize(r["input"]) not in held]
texts = [r["input"] for r in soft]; rows = [np.array([r["probs"].get(l, 0.0) for l in labels]) for r in soft]
kind = [r.get("judges", "all") for r in soft]
seen = {normalize(t) for t in texts}
for r in map(json.loads, open(RUN / "data/train.jsonl")):
    if normalize(r["input"]) not in seen and r["output"] in labels:
        texts.append(r["input"]); rows.append(np.eye(len(labels))[labels.index(r["output"])]); kind.append("fixed")
targets = np.stack([p / p.sum() for p in rows]); kind = np.array(kind)
q = pool.embed_texts([e.input for e in spec.examples])
lq = label_queries(spec)
if len(lq): q = np.concatenate([q, lq])
v = pool.embed_texts(texts)
s = (v @ q.T).max(1)
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
sa = s[kind == "all"]
ref = np.median(sa)
w = np.minimum(1.0, np.exp((s - ref) / 0.05)); w[kind == "fixed"] = 1.0
k = len(labels)
informative = (targets.max(1) - 1.0 / k) > 0.01
out = {"task": TASK, "run": str(RUN).split("/runs/")[0].split("/")[-1], "uniform": int((~informative).sum()),
       "enc1": acc(np.ones(len(s))), "near": acc(w)}
base_keep = keep.copy()
for wd in (1e-3, 1e-2, 3e-2, 1e-1):
    cfg = ProbeConfig(weight_decay=wd)
    keep = base_keep & informative
    out[f"near_inf_wd{wd}"] = acc(w)
    keep = base_keep
    out[f"near_wd{wd}"] = acc(w)
print(json.dumps(out), flush=True)
