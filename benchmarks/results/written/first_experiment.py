"""The first experiment (before p2m_engine/data/written.py): the teacher writes unlabelled inputs like the demos
(no label asked), written to a file that a build then reads as its --unlabelled texts, so that they are labelled
first, by every judge, and weigh 1. Usage: python first_experiment.py TASK N_SCHEDULE OUT TASK_JSON [STOP]
(the temperature anneals over N_SCHEDULE inputs; STOP ends it earlier). See results.md."""
import json, random, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from agent.llms import LLMSettings, open_llm
from p2m_engine.data.attributes import TOPICS
from p2m_engine.data.pairs import _input_schema, _fields
from p2m_engine.data.synth import normalize, shingles, jaccard
from p2m_engine.errors import UnparseableAnswerError
from p2m_engine.types import TaskSpec
from prompts import render
task, n_target, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
spec = TaskSpec.from_dict(json.loads(Path(sys.argv[4]).read_text()))
demos = [e.input for e in spec.examples]
limit = max(40, 2 * max(len(d) for d in demos))
rng = random.Random(0)
kept, sh = [], []
banned = {normalize(d) for d in demos}
t0 = time.time(); batch = 0
with open_llm(LLMSettings(), Path('logs')) as llm:
    stop = int(sys.argv[5]) if len(sys.argv) > 5 else n_target
    while len(kept) < stop and batch < 4 * n_target // 8:
        batch += 1
        shown = demos + rng.sample(kept, min(3, len(kept))); rng.shuffle(shown)
        t = round(0.8 + 0.5 * len(kept) / n_target, 2)
        messages = [{"role": "system", "content": render("generate_inputs_system", max_chars=limit)},
                    {"role": "user", "content": render("generate_inputs", instruction=spec.instruction,
                                                       inputs=[json.dumps(x) for x in shown], n=8, topic=rng.choice(TOPICS), lines=0)}]
        try:
            reply = llm.call_tool(messages, "write_inputs", _input_schema(8, limit), temperature=t, max_tokens=32 + 8 * (limit // 3), variant=batch)
        except UnparseableAnswerError:
            continue
        for x in _fields(reply, "input")[:8]:
            x = x.strip(); k = normalize(x); s = shingles(x)
            if len(x) < 10 or k in banned or any(jaccard(s, o) > 0.6 for o in sh):
                continue
            banned.add(k); kept.append(x); sh.append(s)
        print(batch, len(kept), round(time.time() - t0), flush=True)
out.write_text(''.join(json.dumps({"input": x}) + "\n" for x in kept))
print("done", len(kept), round(time.time() - t0))
