"""Model and GPU specs loaded from ``profiles/`` and converted to SI units (a model's shape: ``sim.model_shape``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from sim.config_yaml import MODEL_PATH_HINT, names_a_path
from sim.errors import ConfigError
from sim.hf_config import hf_model_spec
from sim.model_shape import GIB, ModelSpec

PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"

@dataclass(frozen=True, slots=True)
class LinkSpec:
    """The link between two GPUs of a node, as a ring collective step sees it."""

    kind: str  # e.g. nvlink4, pcie4-x16
    bandwidth: float  # B/s per direction
    step_latency: float  # s per ring step
    source: str


@dataclass(frozen=True, slots=True)
class GPUSpec:
    """One GPU's peak dense tensor throughput, memory and GPU-to-GPU link, in SI units."""

    name: str
    peak_flops: float  # FLOP/s, dense BF16/FP16
    memory_bytes: int
    memory_bandwidth: float  # B/s
    link: LinkSpec
    source: str
    # FLOP/s, dense FP8 tensor throughput (FP32 accumulate) where the GPU has FP8 tensor cores (compute capability
    # 8.9 and up); None where it has none: vLLM then runs an FP8 checkpoint's GEMMs weight-only (Marlin, W8A16)
    fp8_peak_flops: float | None = None


@lru_cache(maxsize=None)
def _read_table(filename: str) -> dict[str, dict]:
    """A spec table, parsed once per process (callers only read it)."""
    path = PROFILES_DIR / filename
    with path.open() as fh:
        data = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 (a safe loader)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of names to specs")
    return data


def _lookup(table: dict[str, dict], name: str, kind: str, filename: str, alternative: str = "") -> dict:
    if name not in table:
        raise ConfigError(f"unknown {kind} {name!r}; known {kind}s (profiles/{filename}): {', '.join(sorted(table))}"
                          f"{alternative}")
    return table[name]


@lru_cache(maxsize=None)
def model_spec(name: str) -> ModelSpec:
    """The spec of model ``name``: an entry of ``profiles/models.yaml``, or a path (written with a '/' or
    ending in .json) to a Hugging Face config.json or its folder (``sim.hf_config``)."""
    table = _read_table("models.yaml")
    if name not in table and names_a_path(name):
        return hf_model_spec(name)
    entry = _lookup(table, name, "model", "models.yaml", f"; {MODEL_PATH_HINT}")
    return ModelSpec(name=name, **{k: v for k, v in entry.items() if k != "aliases"})


@lru_cache(maxsize=None)
def gpu_spec(name: str) -> GPUSpec:
    """The spec of GPU ``name`` from ``profiles/gpus.yaml``, converted to SI."""
    entry = _lookup(_read_table("gpus.yaml"), name, "GPU", "gpus.yaml")
    link = entry.get("link") or {}
    try:
        link_spec = LinkSpec(kind=str(link["kind"]), bandwidth=float(link["bandwidth_gbps"]) * 1e9,
                             step_latency=float(link["step_latency_us"]) * 1e-6, source=str(link["source"]))
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"profiles/gpus.yaml: GPU {name!r} needs link.{{kind, bandwidth_gbps, step_latency_us, "
                          "source}}") from None
    return GPUSpec(
        name=name,
        peak_flops=float(entry["dense_bf16_tflops"]) * 1e12,
        memory_bytes=int(round(float(entry["memory_gib"]) * GIB)),
        memory_bandwidth=float(entry["memory_bandwidth_gbps"]) * 1e9,
        link=link_spec,
        source=entry["source"],
        fp8_peak_flops=None if entry.get("dense_fp8_tflops") is None else float(entry["dense_fp8_tflops"]) * 1e12,
    )


def known_models() -> list[str]:
    return sorted(_read_table("models.yaml"))


def known_gpus() -> list[str]:
    return sorted(_read_table("gpus.yaml"))


def _spelling(name: str) -> str:
    """A name with case, spaces and punctuation dropped: ``Llama-3.1-8B`` and ``llama_3_1_8b`` spell one name."""
    return re.sub(r"[^0-9a-z]", "", name.casefold())


@lru_cache(maxsize=None)
def _spellings(filename: str) -> dict[str, str | None]:
    """Each entry's name and ``aliases`` (as other tools write it: a Hugging Face id, an ``nvidia-smi`` name), by
    spelling; None where two entries share one (then neither is guessed)."""
    index: dict[str, str | None] = {}
    for name, entry in _read_table(filename).items():
        for spelling in {_spelling(n) for n in [name, *(entry.get("aliases") or [])]}:
            index[spelling] = name if index.get(spelling, name) == name else None
    return index


def canonical_model(value: object) -> str | None:
    """The profiles/models.yaml entry that ``value`` names however it is spelled or aliased (a Hugging Face id such
    as ``meta-llama/Llama-3.1-8B``), or None. A value that names an existing path is the path (a config.json)."""
    if not isinstance(value, str) or (names_a_path(value) and Path(value).exists()):
        return None
    return _spellings("models.yaml").get(_spelling(value))


def canonical_gpu(value: object) -> str | None:
    """The profiles/gpus.yaml entry that ``value`` names however it is spelled or aliased (``RTXPRO6000``,
    ``NVIDIA GeForce RTX 4090``), or None."""
    return _spellings("gpus.yaml").get(_spelling(value)) if isinstance(value, str) else None
