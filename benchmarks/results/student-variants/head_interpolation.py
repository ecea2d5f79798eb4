"""WiSE-FT replay: interpolate the probe head trained on soft labels with the zero-shot head of the encoder judges.
Usage: python head_interpolation.py RUN TASK"""
import json, sys, re
from pathlib import Path
import numpy as np
from p2m_engine.data.synth import normalize
from p2m_engine.students.embeddings import embed
from p2m_engine.students.probe_student import ProbeConfig, _fit_head, consistent
from p2m_engine.task import parse_task
from p2m_engine.data.labelling import _described

RUN, TASK = Path(sys.argv[1]), sys.argv[2]
D = (Path(__file__).resolve().parents[3] / ".." / "shared" / "data") / TASK
spec = json.loads((RUN / "task.json").read_text())
from p2m_engine.types import TaskSpec
pspec = parse_task((D / "prompt.txt").read_text())
labels = tuple(spec.get("labels") or pspec.labels)
instruction = spec.get("instruction", pspec.instruction)
descs = spec.get("label_descriptions") or {}
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
keep = consistent(x, targets, ProbeConfig(folds=5)) | fixed
W, b, _ = _fit_head(x[keep], targets[keep], np.ones(keep.sum()), cfg)
tr = [l for l in open(RUN / "trace.jsonl") if '"weights"' in l]
wts = json.loads(re.search(r'"weights": (\{[^}]*\})', tr[-1]).group(1).replace('\\"', '"')) if tr else {"label_name": 1, "label_in_instruction": 1}
described = [f"{l}: {descs[l]}" if l in descs else l for l in labels]
protos = {"label_name": described, "label_in_instruction": [f"{instruction} {d}" for d in described]}
enc_w = {k: wts.get(k, 0) for k in protos}
tot = sum(enc_w.values()) or 1
Wz = sum(enc_w[k] / tot * np.asarray(embed(protos[k], model_path=enc), dtype=np.float32) for k in protos) / 0.05
def acc(Wm, bm):
    p = (xd @ Wm.T + bm).argmax(1)
    return round(100 * np.mean(p == gold), 1)
def scale(Wm):
    z = x[keep] @ Wm.T; return float(np.std(z))
out = {"task": TASK, "weights": wts, "ft_scale": round(scale(W), 2), "zs_scale": round(scale(Wz), 2)}
for a in (0, 0.25, 0.5, 0.75, 1.0):
    out[f"a{a}"] = acc((1 - a) * W + a * Wz, (1 - a) * b)
# scale-matched zero-shot head
Wzn = Wz * scale(W) / scale(Wz)
for a in (0.25, 0.5):
    out[f"n{a}"] = acc((1 - a) * W + a * Wzn, (1 - a) * b)
import torch
def fit_sp(x_, t_, W0, lam, steps=300, lr=0.05):
    torch.manual_seed(0)
    xt = torch.tensor(x_); tt = torch.tensor(t_, dtype=torch.float32)
    w0 = torch.tensor(W0.T.copy()); w = w0.clone().requires_grad_(True); bb = torch.zeros(t_.shape[1], requires_grad=True)
    opt = torch.optim.Adam([w, bb], lr=lr)
    for _ in range(steps):
        opt.zero_grad(); ce = -(tt * torch.log_softmax(xt @ w + bb, 1)).sum(1).mean()
        (ce + lam * ((w - w0) ** 2).sum()).backward(); opt.step()
    return w.detach().numpy().T, bb.detach().numpy()
for lam in (1e-3, 1e-2):
    Ws, bs = fit_sp(x[keep], targets[keep], Wzn, lam)
    out[f"sp{lam}"] = acc(Ws, bs)
print(json.dumps(out))
