"""Replay: each soft-labelled row weighted by its nearness to the queries (demos + label queries), before nearness
was recorded by the build (the replay recomputes it). Usage: python replay.py RUN TASK
`load` and `accuracy` are shared with regularisation.py."""
import json, sys
from pathlib import Path
from types import SimpleNamespace
import numpy as np
from p2m_engine.data.synth import normalize
from p2m_engine.data import pool
from p2m_engine.data.labelling import label_queries
from p2m_engine.types import TaskSpec
from p2m_engine.students.embeddings import embed
from p2m_engine.students.probe_student import ProbeConfig, _fit_head, consistent


def load(run: Path, task: str) -> SimpleNamespace:
    """A build's soft-labelled rows (without its validation rows), their nearness `s` to the queries, their and the
    dev rows' embeddings by the build's tuned encoder, and the rows the consistency check keeps."""
    d = (Path(__file__).resolve().parents[3] / ".." / "shared" / "data") / task
    spec = TaskSpec.from_dict(json.loads((run / "task.json").read_text()))
    labels = tuple(spec.labels)
    held = {normalize(json.loads(l)["input"]) for l in open(run / "data/val.jsonl")}
    soft = [r for r in map(json.loads, open(run / "data/soft_labels.jsonl")) if normalize(r["input"]) not in held]
    texts = [r["input"] for r in soft]; rows = [np.array([r["probs"].get(l, 0.0) for l in labels]) for r in soft]
    kind = [r.get("judges", "all") for r in soft]
    seen = {normalize(t) for t in texts}
    for r in map(json.loads, open(run / "data/train.jsonl")):
        if normalize(r["input"]) not in seen and r["output"] in labels:
            texts.append(r["input"]); rows.append(np.eye(len(labels))[labels.index(r["output"])]); kind.append("fixed")
    targets = np.stack([p / p.sum() for p in rows]); kind = np.array(kind)
    q = pool.embed_texts([e.input for e in spec.examples])
    lq = label_queries(spec)
    if len(lq): q = np.concatenate([q, lq])
    s = (pool.embed_texts(texts) @ q.T).max(1)
    enc = run / "iterations/1/model"
    x = np.asarray(embed(texts, model_path=enc), dtype=np.float32)
    dev = [json.loads(l) for l in open(d / "dev.jsonl")]
    xd = np.asarray(embed([r["input"] for r in dev], model_path=enc), dtype=np.float32)
    gold = np.array([labels.index(r["output"]) for r in dev])
    keep = consistent(x, targets, ProbeConfig(folds=5)) | (kind == "fixed")
    return SimpleNamespace(labels=labels, targets=targets, kind=kind, s=s, x=x, xd=xd, gold=gold, keep=keep,
                           run=str(run).split("/runs/")[0].split("/")[-1])


def accuracy(b: SimpleNamespace, w: np.ndarray, keep: np.ndarray, cfg: ProbeConfig = ProbeConfig()) -> float:
    """Dev accuracy of a head fitted on the `keep` rows with row weights `w`."""
    W, bias, _ = _fit_head(b.x[keep], b.targets[keep], w[keep], cfg)
    return round(100 * np.mean((b.xd @ W.T + bias).argmax(1) == b.gold), 1)


def nearness(b: SimpleNamespace, tau: float) -> np.ndarray:
    """The nearness weights at temperature `tau` (the reference: the judged rows' median nearness)."""
    w = np.minimum(1.0, np.exp((b.s - np.median(b.s[b.kind == "all"])) / tau)); w[b.kind == "fixed"] = 1.0
    return w


if __name__ == "__main__":
    RUN, TASK = Path(sys.argv[1]), sys.argv[2]
    b = load(RUN, TASK)
    kind, keep = b.kind, b.keep
    sa, se = b.s[kind == "all"], b.s[kind == "encoder"]
    out = {"task": TASK, "run": b.run,
           "sim_all": [round(float(np.percentile(sa, p)), 3) for p in (10, 50, 90)],
           "sim_enc": [round(float(np.percentile(se, p)), 3) for p in (10, 50, 90)],
           "enc1": accuracy(b, np.ones(len(b.s)), keep), "enc0": accuracy(b, np.where(kind == "encoder", 0.0, 1.0), keep)}
    for tau in (0.01, 0.02, 0.05, 0.1):
        w = nearness(b, tau)
        out[f"tau{tau}"] = accuracy(b, w, keep)
        out[f"tau{tau}_mass"] = round(float(w[kind == "encoder"].sum() / max(1, (kind != "encoder").sum())), 2)
    lab = b.targets.argmax(1)
    for tau in (0.05, 0.1):
        w = nearness(b, tau)
        for c in range(len(b.labels)):  # each label keeps its rows' total weight: nearness picks texts within a label
            m = (lab == c) & keep
            if m.any(): w[lab == c] *= m.sum() / w[m].sum()
        out[f"tau{tau}_label"] = accuracy(b, w, keep)
    print(json.dumps(out), flush=True)
