"""Replay of an unseen classification build's probe student with and without the contrastive step, on the build's
own soft labels (run folder RUN, e.g. a `p2m bench --exclude-own` run of TASK), scored on the task's dev split.
Usage: python replay.py RUN TASK OUT [per_label] [judged]   (per_label 0: the frozen packaged encoder, as before the
step; `judged`: the confident texts are chosen only among those every judge scored, the teacher included)"""
import json, sys
from pathlib import Path

import numpy as np

from p2m_engine.data.synth import normalize
from p2m_engine.students.contrastive import ContrastiveConfig, confident, tune_encoder
from p2m_engine.students.embeddings import packaged_minilm_path
from p2m_engine.students.probe_student import ProbeConfig, predict_probe, train_probe_student
from p2m_engine.task import parse_task

RUN, TASK, OUT = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
PER_LABEL = int(sys.argv[4]) if len(sys.argv) > 4 else 16
JUDGED = len(sys.argv) > 5 and sys.argv[5] == "judged"
DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / TASK
spec = parse_task((DATA / "prompt.txt").read_text())
labels = spec.labels
held = {normalize(json.loads(line)["input"]) for line in open(RUN / "data/val.jsonl")}
soft = [r for r in map(json.loads, open(RUN / "data/soft_labels.jsonl")) if normalize(r["input"]) not in held]
texts = [r["input"] for r in soft]
judged = [r.get("judges") == "all" for r in soft]
rows = [np.array([r["probs"].get(label, 0.0) for label in labels]) for r in soft]
seen = {normalize(t) for t in texts}
for r in map(json.loads, open(RUN / "data/train.jsonl")):  # the build's other rows, one-hot (tools.train.probe_rows)
    if normalize(r["input"]) not in seen and r["output"] in labels:
        texts.append(r["input"])
        judged.append(True)
        rows.append(np.eye(len(labels))[labels.index(r["output"])])
targets = np.stack([p / p.sum() for p in rows])
encoder = packaged_minilm_path()
if PER_LABEL > 0:
    among = np.flatnonzero(judged) if JUDGED else np.arange(len(texts))
    picked = [(texts[int(among[i])], int(targets[among[i]].argmax())) for i in confident(targets[among], PER_LABEL)]
    picked += [(e.input, labels.index(e.output)) for e in spec.examples if e.output in labels]
    tuned = tune_encoder(encoder, picked, OUT, ContrastiveConfig())
    print("tuned on", tuned.pairs, "pairs of", tuned.rows, "texts in", round(tuned.seconds), "s", flush=True)
    encoder = OUT
train_probe_student(texts, targets, labels, OUT, encoder, ProbeConfig(seed=0))
dev = [json.loads(line) for line in open(DATA / "dev.jsonl")]
pred = predict_probe(OUT, [r["input"] for r in dev])
print(TASK, "per_label", PER_LABEL, "rows", len(texts), "dev accuracy",
      round(100 * float(np.mean([p == r["output"] for (p, _), r in zip(pred, dev)])), 1))
