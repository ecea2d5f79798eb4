"""Which texts the contrastive step tunes on, replayed on an unseen build's own soft labels (as replay.py).
Usage: python replay_judged.py RUN TASK OUT VARIANT
VARIANT: base (as committed) | all (confident rows among the rows every judge scored) | none (no tuning)"""
import json, sys
from pathlib import Path
import numpy as np

from p2m_engine.data.synth import normalize
from p2m_engine.students.contrastive import ContrastiveConfig, confident, tune_encoder
from p2m_engine.students.embeddings import packaged_minilm_path
from p2m_engine.students.probe_student import ProbeConfig, predict_probe, train_probe_student
from p2m_engine.task import parse_task

RUN, TASK, OUT, VAR = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / TASK
spec = parse_task((DATA / "prompt.txt").read_text())
labels = spec.labels
held = {normalize(json.loads(line)["input"]) for line in open(RUN / "data/val.jsonl")}
soft = [r for r in map(json.loads, open(RUN / "data/soft_labels.jsonl")) if normalize(r["input"]) not in held]
texts = [r["input"] for r in soft]
judged = [r.get("judges") == "all" for r in soft]
rows = [np.array([r["probs"].get(label, 0.0) for label in labels]) for r in soft]
seen = {normalize(t) for t in texts}
for r in map(json.loads, open(RUN / "data/train.jsonl")):
    if normalize(r["input"]) not in seen and r["output"] in labels:
        texts.append(r["input"]); judged.append(True)
        rows.append(np.eye(len(labels))[labels.index(r["output"])])
targets = np.stack([p / p.sum() for p in rows])
encoder = packaged_minilm_path()
if VAR != "none":
    if VAR == "all":
        idx = np.flatnonzero(judged)
        chosen = [int(idx[i]) for i in confident(targets[idx], 16)]
    else:
        chosen = confident(targets, 16)
    picked = [(texts[i], int(targets[i].argmax())) for i in chosen]
    picked += [(e.input, labels.index(e.output)) for e in spec.examples if e.output in labels]
    tuned = tune_encoder(encoder, picked, OUT, ContrastiveConfig())
    print("tuned on", tuned.pairs, "pairs of", tuned.rows, "texts in", round(tuned.seconds), "s", flush=True)
    encoder = OUT
train_probe_student(texts, targets, labels, OUT, encoder, ProbeConfig(seed=0))
dev = [json.loads(line) for line in open(DATA / "dev.jsonl")]
pred = predict_probe(OUT, [r["input"] for r in dev])
print(TASK, VAR, "rows", len(texts), "dev accuracy",
      round(100 * float(np.mean([p == r["output"] for (p, _), r in zip(pred, dev)])), 1), flush=True)
