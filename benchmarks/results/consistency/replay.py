"""Replay of an unseen classification build's probe student head (run folder RUN, a `p2m bench --exclude-own` run of
TASK made before the consistency check), on the build's own soft labels and its tuned encoder, scored on the task's
dev split: all rows (reproduces the build), the rows whose out-of-fold prediction (5 folds) agrees with the judges'
label, every row weighted by that prediction's probability of the judges' label, and the consistent rows with the
prior shifted from their distribution (what the build now does).
Usage: python replay.py RUN TASK [fold_seed]"""
import json, sys
from pathlib import Path
import numpy as np
from p2m_engine.data.synth import normalize
from p2m_engine.students.embeddings import embed
from p2m_engine.students.probe_student import ProbeConfig, _fit_head, consistent
from p2m_engine.task import parse_task

RUN, TASK = Path(sys.argv[1]), sys.argv[2]
D = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / TASK
spec = parse_task((D / "prompt.txt").read_text()); labels = spec.labels
held = {normalize(json.loads(l)["input"]) for l in open(RUN / "data/val.jsonl")}
soft = [r for r in map(json.loads, open(RUN / "data/soft_labels.jsonl")) if normalize(r["input"]) not in held]
texts = [r["input"] for r in soft]; rows = [np.array([r["probs"].get(l, 0.0) for l in labels]) for r in soft]
fixed = [False] * len(texts)
seen = {normalize(t) for t in texts}
for r in map(json.loads, open(RUN / "data/train.jsonl")):
    if normalize(r["input"]) not in seen and r["output"] in labels:
        texts.append(r["input"]); rows.append(np.eye(len(labels))[labels.index(r["output"])]); fixed.append(True)
targets = np.stack([p / p.sum() for p in rows]); fixed = np.array(fixed)
enc = RUN / "iterations/1/model"
x = np.asarray(embed(texts, model_path=enc), dtype=np.float32)
dev = [json.loads(l) for l in open(D / "dev.jsonl")]
xd = np.asarray(embed([r["input"] for r in dev], model_path=enc), dtype=np.float32)
gold = np.array([labels.index(r["output"]) for r in dev])
cfg = ProbeConfig()
def acc(keep, w=None):
    W, b, _ = _fit_head(x[keep], targets[keep], np.ones(keep.sum()) if w is None else w[keep], cfg)
    p = (xd @ W.T + b).argmax(1)
    return round(100 * np.mean(p == gold), 1), np.round(np.bincount(p, minlength=len(labels)) / len(gold), 2)
allrows = np.ones(len(texts), bool)
print(TASK, "all", len(texts), acc(allrows))
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
agree = consistent(x, targets, ProbeConfig(seed=seed, folds=5)) | fixed  # the product's check
print(TASK, "consistent", int(agree.sum()), acc(agree))
# The held-out probabilities themselves, for the weighted variant (the check keeps only their argmax).
fold = np.random.default_rng(seed).integers(0, 5, len(texts))
oof = np.zeros_like(targets)
for f in range(5):
    tr = fold != f
    W, b, _ = _fit_head(x[tr], targets[tr], np.ones(tr.sum()), cfg)
    z = x[~tr] @ W.T + b; z -= z.max(1, keepdims=True); e = np.exp(z); oof[~tr] = e / e.sum(1, keepdims=True)
w = oof[np.arange(len(texts)), targets.argmax(1)]; w[fixed] = 1
print(TASK, "weighted by oof prob of judged label", acc(allrows, w))
from p2m_engine.students import prior as P
keep = agree
W, b, _ = _fit_head(x[keep], targets[keep], np.ones(keep.sum()), cfg)
soft_prior = P.soft_distribution(targets[~fixed], labels); trained = P.soft_distribution(targets[keep], labels)
shift = P.logit_shift(soft_prior, trained); print("shift", shift, P.worth_shifting(shift))
bb = b + np.array([shift[l] for l in labels])
print(TASK, "consistent + prior shift to kept rows", round(100 * np.mean((xd @ W.T + bb).argmax(1) == gold), 1))
