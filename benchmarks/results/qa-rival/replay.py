"""Replay a committed SQuAD build's own data with the QA teacher-born rival: the embedded teacher's weights fine-tuned
with LoRA to write the answer after the question and its context (384 input tokens), then scored by SQuAD exact match
and F1 on squad's first 100 dev rows. Usage, with P2M_HOME set as for the build:

    python benchmarks/results/qa-rival/replay.py RUN OUT STEPS NCLOZE BATCH

RUN is the build's run folder: its data/train.jsonl and val.jsonl (the teacher's pairs) and NCLOZE of its
data/cloze.jsonl rows (shuffled, seed 0) train; val.jsonl and the next 16 cloze rows validate. The run replayed:
gen14's squad build at `per_label=1` (own data hidden; its span head scored 13.4 on the 374 dev rows, 22.0 on the first
50, where its teacher scored 34.0). `replay-b8.log`: STEPS 20, NCLOZE 300, BATCH 8. The same at BATCH 16 was killed by
the kernel for memory (24.4 GB resident) before its first step ended."""
import json, sys, time, random
from pathlib import Path
from p2m_engine.eval.metrics import squad_metrics
from p2m_engine.llm.embedded import embedded_model_path
from p2m_engine.students import predict_student
from p2m_engine.students.packaged import ensure_teacher_lm
from p2m_engine.students.textgen import GenerationConfig, train_generator
from p2m_engine.students.train import TrainConfig
from p2m_engine.task import parse_task
from p2m_engine.types import Example

RUN, OUT, STEPS, NCLOZE = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
HUB = Path(__file__).resolve().parents[3].parent / "shared" / "data"
spec = parse_task((HUB / "squad" / "prompt.txt").read_text())
def load(name):
    return [Example(r["input"], r["output"]) for r in map(json.loads, open(RUN / "data" / name))]
train, val = load("train.jsonl"), load("val.jsonl")
cloze = load("cloze.jsonl"); random.Random(0).shuffle(cloze)
train = train + cloze[:NCLOZE]; val = val + cloze[NCLOZE:NCLOZE + 16]
config = TrainConfig(base_model=str(ensure_teacher_lm(embedded_model_path())), epochs=3.0, seed=0, max_steps=STEPS, max_length=384, batch_size=int(sys.argv[5]))
t = time.time()
if not (OUT / "config.json").exists():
    res = train_generator(train, val, OUT, config, None, GenerationConfig(lora="on"), spec.instruction)
    print("train s", round(time.time() - t), "rows", res.n_train, res.n_val, "val", round(res.val_score, 4), flush=True)
rows = [json.loads(l) for l in open(HUB / "squad" / "dev.jsonl")][:100]
t = time.time()
pred = predict_student("generation", OUT, [r["input"] for r in rows])
print("predict s", round(time.time() - t))
gold = [r["output"] for r in rows]
for n in (50, 100):
    print("first", n, squad_metrics(gold[:n], pred[:n]))
with open(str(OUT) + ".pred.jsonl", "w") as f:
    for r, p in zip(rows, pred):
        f.write(json.dumps({"gold": r["output"], "pred": p}, ensure_ascii=False) + "\n")
