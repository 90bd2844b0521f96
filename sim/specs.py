"""Model and GPU specs loaded from ``profiles/`` and converted to SI units."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from sim.config_yaml import MODEL_PATH_HINT, names_a_path
from sim.errors import ConfigError
from sim.hf_config import hf_model_spec

PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1}
GIB = 1024**3


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A decoder-only transformer's shape.

    A mixture-of-experts model (Qwen3-MoE, Mixtral) sets the four MoE fields: in each of its
    ``num_moe_layers`` MoE layers a router (hidden × experts) sends every token to
    ``num_experts_per_tok`` of ``num_experts`` gated-MLP experts of width ``moe_intermediate_size``;
    the other layers have a dense gated MLP of width ``intermediate_size``. Dense models leave them None.
    ``num_parameters`` counts every parameter (the weights held in memory); ``active_parameters`` those a
    token computes with. ``intermediate_size`` is the MLP's hidden width (each of gate and up's outputs);
    ``gated_mlp`` False for a plain MLP (up, activation, down: Phi's fc1 -> gelu -> fc2) of two matrices, not three.
    """

    name: str
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int  # the dense MLP's width (layers without experts)
    vocab_size: int
    num_parameters: int
    max_position_embeddings: int
    source: str
    gated_mlp: bool = True  # gate, up and down matrices (SwiGLU); False: up and down only
    # Tokens each query attends to (itself included) where narrower than the context; None: full attention
    sliding_window: int | None = None
    num_experts: int | None = None  # routed experts per MoE layer
    num_experts_per_tok: int | None = None  # experts each token is routed to (top-k)
    moe_intermediate_size: int | None = None  # one expert's gated-MLP width
    num_moe_layers: int | None = None  # layers whose MLP is the experts (the rest are dense)

    def __post_init__(self) -> None:
        if not isinstance(self.gated_mlp, bool):
            raise ConfigError(f"model {self.name!r}: gated_mlp must be true or false (got {self.gated_mlp!r})")
        window = self.sliding_window
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window <= 0):
            raise ConfigError(f"model {self.name!r}: sliding_window must be a positive integer (got {window!r})")
        moe = (self.num_experts, self.num_experts_per_tok, self.moe_intermediate_size, self.num_moe_layers)
        if all(v is None for v in moe):
            return
        if any(v is None or isinstance(v, bool) or not isinstance(v, int) for v in moe):
            raise ConfigError(f"model {self.name!r}: a mixture of experts needs integer num_experts, "
                              f"num_experts_per_tok, moe_intermediate_size and num_moe_layers (got {moe})")
        if not (1 <= self.num_experts_per_tok <= self.num_experts and self.moe_intermediate_size > 0
                and 1 <= self.num_moe_layers <= self.num_layers):
            raise ConfigError(f"model {self.name!r}: needs 1 <= num_experts_per_tok <= num_experts, "
                              f"moe_intermediate_size > 0 and 1 <= num_moe_layers <= num_layers (got {moe})")

    @property
    def is_moe(self) -> bool:
        return self.num_experts is not None

    @property
    def moe_layers(self) -> int:
        """Layers whose MLP is a mixture of experts (0 for a dense model)."""
        return self.num_moe_layers or 0

    @property
    def longest_request(self) -> int:
        """The most tokens (prompt and output) kvsim serves a request of this model: its context, or its sliding
        window where narrower. Up to the window a sliding-window model attends to every token, as kvsim's KV size
        and attention cost assume; beyond it vLLM drops the oldest blocks, which kvsim does not model."""
        if self.sliding_window is None:
            return self.max_position_embeddings
        return min(self.max_position_embeddings, self.sliding_window)

    @property
    def dense_mlp_parameters(self) -> int:
        """One dense MLP's weight matrices: gate, up and down (a plain MLP: up and down), biases aside."""
        return (3 if self.gated_mlp else 2) * self.hidden_size * self.intermediate_size

    @property
    def expert_parameters(self) -> int:
        """One expert's parameters: gate, up and down matrices (no biases in either family)."""
        return 3 * self.hidden_size * (self.moe_intermediate_size or 0)

    @property
    def routed_expert_parameters(self) -> int:
        """Every routed expert's parameters, over all MoE layers (0 for a dense model)."""
        return self.moe_layers * (self.num_experts or 0) * self.expert_parameters

    def weight_bytes_per_gpu(self, dtype_bytes: int, tensor_parallel_size: int, data_parallel_size: int = 1) -> float:
        """Weights one GPU holds: all of them over the TP ranks, the routed experts over the data-parallel
        group's data_parallel_size × tensor_parallel_size GPUs (``sim.serving.moe``)."""
        if data_parallel_size == 1 or not self.is_moe:
            return self.num_parameters * dtype_bytes / tensor_parallel_size
        experts = self.routed_expert_parameters
        return (self.num_parameters - experts + experts / data_parallel_size) * dtype_bytes / tensor_parallel_size

    @property
    def active_parameters(self) -> int:
        """Parameters one token computes with: all but the experts it is not routed to (the router counts)."""
        if not self.is_moe:
            return self.num_parameters
        idle = self.num_experts - self.num_experts_per_tok
        return self.num_parameters - self.moe_layers * idle * self.expert_parameters

    def kv_bytes_per_token(self, dtype_bytes: int, tensor_parallel_size: int = 1) -> int:
        """K and V for every layer: 2 × layers × kv_heads × head_dim × dtype bytes, per TP rank.

        KV heads are split across TP ranks (replicated when TP exceeds the KV-head count,
        as vLLM does), so one rank holds ``max(1, kv_heads // tp)`` heads.
        """
        heads_per_rank = max(1, self.num_kv_heads // tensor_parallel_size)
        return 2 * self.num_layers * heads_per_rank * self.head_dim * dtype_bytes


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
