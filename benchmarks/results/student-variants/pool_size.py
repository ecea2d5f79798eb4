"""Pool size experiment (encoder judges only, packaged encoder, no contrastive): does reading more rows of the
splits whose text is near the task give a better student?  Usage: python pool_size.py TASK MODE(base|top|all) [factor]"""
import json, sys, time, collections, random
from pathlib import Path
import numpy as np
from p2m_engine.data import pool
from p2m_engine.data.labelling import name_judges, label_queries, pooled, LabelConfig
from p2m_engine.data.datasets import scan_hub
from p2m_engine.data.synth import normalize
from p2m_engine.students.probe_student import ProbeConfig, _fit_head, consistent
from p2m_engine.task import parse_task

TASK, MODE = sys.argv[1], sys.argv[2]
FACTOR = int(sys.argv[3]) if len(sys.argv) > 3 else 5
D = (Path(__file__).resolve().parents[3] / ".." / "shared" / "data") / TASK
spec = parse_task((D / "prompt.txt").read_text())
hub = [p for p in (Path(__file__).resolve().parents[3] / ".." / "shared" / "data").iterdir() if p.name != TASK]
import tempfile
hubdir = Path(tempfile.gettempdir()) / f"p2m-pool-size-{TASK}"; hubdir.mkdir(exist_ok=True)  # the hub without the task
for p in hub:
    if not (hubdir / p.name).exists(): (hubdir / p.name).symlink_to(p)
dev = [json.loads(l) for l in open(D / "dev.jsonl")]
exclude = {normalize(r["input"]) for r in dev}
demos = [e.input for e in spec.examples]
t0 = time.time()
def collect(rows_for):
    lo, hi = pool.length_bounds(demos); form = pool.same_form(demos)
    banned = exclude | {normalize(d) for d in demos}
    out, vv, seen = [], [], set()
    for d in scan_hub([hubdir]):
        for split in pool.SPLITS:
            path = d.path / f"{split}.jsonl"
            if not path.is_file(): continue
            n = rows_for(f"{d.name}/{split}")
            old = pool.PIECES_PER_SPLIT
            pool.PIECES_PER_SPLIT = int(old * n / pool.ROWS_PER_SPLIT)
            texts = pool._split_pieces(path, n, 0, form)
            pool.PIECES_PER_SPLIT = old
            vecs = pool._split_vectors(path, texts)
            for t, v in zip(texts, vecs):
                k = normalize(t)
                if lo <= len(t) <= hi and k and k not in seen and k not in banned:
                    seen.add(k); out.append(pool.PoolText(t, f"{d.name}/{split}")); vv.append(v)
    return out, np.stack(vv)
K = 3300
queries = np.vstack([pool.embed_texts(demos), label_queries(spec)])
texts, vecs = collect(lambda s: pool.ROWS_PER_SPLIT)
chosen = pool.take(texts, vecs, queries, K)
if MODE != "base":
    share = collections.Counter(texts[i].source for i in chosen)
    if MODE == "top":
        # splits whose share of the picks is at least their share of the pool... simpler: the top splits by picks
        top = {s for s, c in share.most_common() if c >= 0.5 * K / len(share)}
    else:
        top = set(share) | {t.source for t in texts}
    print("more rows from", sorted(top), file=sys.stderr)
    texts, vecs = collect(lambda s: pool.ROWS_PER_SPLIT * FACTOR if s in top else pool.ROWS_PER_SPLIT)
    chosen = pool.take(texts, vecs, queries, K)
print("pool", len(texts), "secs", round(time.time() - t0), file=sys.stderr)
sel = [texts[i].text for i in chosen]; sv = vecs[chosen]
J = name_judges(spec, sv, LabelConfig().temperature)
probs = pooled(J, {"label_name": 0.8, "label_in_instruction": 0.2})
x = np.vstack([sv, pool.embed_texts(demos)])
t = np.vstack([probs, np.eye(len(spec.labels))[[spec.labels.index(e.output) for e in spec.examples]]])
keep = consistent(x, t, ProbeConfig(folds=5)); keep[-len(demos):] = True
W, b, _ = _fit_head(x[keep], t[keep], np.ones(keep.sum()), ProbeConfig())
xd = pool.embed_texts([r["input"] for r in dev])
gold = np.array([spec.labels.index(r["output"]) for r in dev])
zs = pooled(name_judges(spec, xd, LabelConfig().temperature), {"label_name": 0.8, "label_in_instruction": 0.2})
src = collections.Counter(texts[i].source.split("/")[0] for i in chosen).most_common(6)
print(json.dumps({"task": TASK, "mode": MODE, "pool": len(texts), "acc": round(100 * np.mean((xd @ W.T + b).argmax(1) == gold), 1),
                  "zs_dev": round(100 * np.mean(zs.argmax(1) == gold), 1), "top_sources": src}))
