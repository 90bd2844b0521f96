"""Model and GPU specs loaded from ``profiles/`` and converted to SI units (a model's shape: ``sim.model_shape``)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from sim.config import MAX_LATENCY_US, MIN_GBPS
from sim.config_yaml import GPU_PATH_HINT, MODEL_PATH_HINT, load_yaml, names_a_path, read_config_file
from sim.errors import ConfigError, quote, quote_yaml
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
    peer_access: bool = True  # GPUs reach each other's memory over the link (GeForce drivers disable it over PCIe)

    @property
    def joins_every_gpu(self) -> bool:
        """NVLink through an NVSwitch (``kind`` nvlink3/4/5, not a bridge's pairs) with peer access: any two GPUs of
        the node reach each other's memory over it (a PD transfer within the node goes GPU to GPU over it)."""
        return self.kind.startswith("nvlink") and not self.kind.endswith("bridge") and self.peer_access


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
    # bytes the device reports as its total (torch.cuda.mem_get_info()[1], what vLLM multiplies by
    # gpu_memory_utilization), where a measurement is cited; None: ``reported_memory`` estimates it
    reported_memory_bytes: int | None = None
    # streaming multiprocessors (whitepaper or datasheet), where the spec gives them; None: unknown
    sm_count: int | None = None
    # bytes of L2 cache (whitepaper), where the spec gives them; None: unknown
    l2_bytes: int | None = None
    # B/s the L2 serves on the datasheet's scale (a measured L2/DRAM ratio x memory_bandwidth: the roofline applies
    # bandwidth_efficiency to both), where the spec gives one; None: ``cache_bandwidth`` estimates it
    l2_bandwidth: float | None = None
    # (major, minor) where a GPU spec file states it; a listed GPU's is sim.serving.attention_backend's table
    compute_capability: tuple[int, int] | None = None

    @property
    def reported_memory(self) -> int:
        """The device's total memory as CUDA reports it (vLLM's ``MemorySnapshot.total_memory``): the spec's
        ``reported_memory_gib`` where given, else the marketed size × ``REPORTED_MEMORY_FRACTION``."""
        if self.reported_memory_bytes is not None:
            return self.reported_memory_bytes
        return int(self.memory_bytes * REPORTED_MEMORY_FRACTION)

    @property
    def cache_bandwidth(self) -> float:
        """The L2's bandwidth, B/s: the spec's ``l2_bandwidth_gbps`` where given, else the memory bandwidth ×
        ``L2_BANDWIDTH_RATIO``."""
        if self.l2_bandwidth is not None:
            return self.l2_bandwidth
        return self.memory_bandwidth * L2_BANDWIDTH_RATIO


# A GPU reports less than its marketed size (the driver's reservation; ECC where on): reported / marketed GiB for the
# GPUs profiles/gpus.yaml cites a measurement of is 0.9799 (RTX 4090), 0.9803 (RTX 5090), 0.9875 (A100 40GB), 0.9893
# (RTX PRO 6000), 0.9903 (H100 SXM), 0.9906 (A100 80GB); a GPU without one takes their median, 0.988.
REPORTED_MEMORY_FRACTION = 0.988
# L2 bandwidth / memory bandwidth: 3,133 / 900 GB/s (V100), 7,219 / 1,555 (A100), 8,986 / 3,352 (H100) = 3.48, 4.64,
# 2.68 (Ultrasonics Sonochemistry 99:106546, 2023, Table 3: doi.org/10.1016/j.ultsonch.2023.106546, PMC10448217);
# their median, for a GPU whose spec gives no l2_bandwidth_gbps (sim.serving.elementwise). The table's L2 figures are
# peaks, not measurements: bytes a clock x its clock rates (2,048 x 1,530 MHz, 5,120 x 1,410, 5,120 x 1,755), the
# DRAM's the datasheets', so the ratio is on the datasheet scale the roofline's bandwidth_efficiency applies to.
L2_BANDWIDTH_RATIO = 3133 / 900


@lru_cache(maxsize=None)
def _read_table(filename: str) -> dict[str, dict]:
    """A spec table, parsed once per process (callers only read it)."""
    path = PROFILES_DIR / filename
    # the loader every config file takes (unique keys, numbers as written); YAML is UTF-8 whatever the locale
    data = load_yaml(path.read_text(encoding="utf-8"))
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


# A GPU spec's numbers and their domains [low, high]: above 10^6 of any unit (an exaFLOP/s, a PiB, a PB/s) is a typo,
# not a GPU, and so is below 10^-3 (1 GFLOP/s, 1 MiB, 1 MB/s: a link's MIN_GBPS). Nearer 0 a step took ~1e300 s (a
# report's TTFT of 1.8e303 s) or, at 5e-324, stalled the engine.
MIN_GPU_NUMBER = 1e-3
GPU_NUMBERS = {key: (MIN_GPU_NUMBER, 1e6)
               for key in ("dense_bf16_tflops", "dense_fp8_tflops", "memory_gib", "reported_memory_gib",
                           "memory_bandwidth_gbps", "l2_mib", "l2_bandwidth_gbps")} | {"sm_count": (1, 1e6)}
LINK_NUMBERS = {"bandwidth_gbps": (MIN_GBPS, 1e6), "step_latency_us": (0.0, MAX_LATENCY_US)}
GPU_OPTIONAL_NUMBERS = ("dense_fp8_tflops", "reported_memory_gib", "sm_count", "l2_mib", "l2_bandwidth_gbps")
GPU_OPTIONAL_FIELDS = ("compute_capability", "aliases", "source")  # optional, and checked apart from the numbers
CAPABILITY_SPELLING = re.compile(r"^(\d{1,2})\.(\d)$")  # NVIDIA's 8.9, 12.0
# compute capabilities whose vLLM kernels kvsim models (Ampere's 8.0 to Blackwell's 12.x); vLLM's attention backends
# need 8.0 for bf16 (v1/attention/backends/flash_attn.py supports_compute_capability)
MODELLED_MAJORS = (8, 12)
# GB/s a link of each kind carries a direction, at most: NVLink a GPU's total over two (NVIDIA's NVLink figures: A100
# 600 GB/s, H100 900, B200 1.8 TB/s; its bridges, A100 PCIe and H100 NVL, 600 GB/s), PCIe a lane's share of PCI-SIG's
# x16 rate (x16 both ways: 3.0 32 GB/s, 4.0 64, 5.0 128, 6.0 256, 7.0 512) times the lanes (x16 where unsaid). NCCL's
# figures the entries give are below them (A100's 240 of 300; PCIe 5.0 x16's 48 of 64)
NVLINK_DIRECTION_GBPS = {"nvlink3": 300.0, "nvlink3-bridge": 300.0, "nvlink4": 450.0, "nvlink4-bridge": 300.0,
                         "nvlink5": 900.0}
PCIE_LANE_GBPS = {3: 1.0, 4: 2.0, 5: 4.0, 6: 8.0, 7: 16.0}


def link_ceiling(kind: str) -> float:
    """The most GB/s a link of ``kind`` (``NVLINK_KINDS`` or ``PCIE_KIND``) carries in one direction."""
    if kind in NVLINK_DIRECTION_GBPS:
        return NVLINK_DIRECTION_GBPS[kind]
    generation, _, lanes = kind.removeprefix("pcie").partition("-x")
    return PCIE_LANE_GBPS[int(generation)] * int(lanes or 16)


FP8_OVER_BF16_MAX = 4.05  # the most a datasheet's FP8 peak is its BF16 one's (4x, _check_memory_and_compute), + 1.25%
# for its rounding (the entries' 2x pairs print 1.999x to 2.025x)
FP8_CAPABILITY = (8, 9)  # the first with FP8 tensor cores (Ada's; NVIDIA's Ada and Hopper tuning guides)
# a link's kinds: NVLink through an NVSwitch board (nvlink3/4/5) or a two-GPU bridge, or PCIe of a generation and width:
# the generations PCI-SIG has published (3.0 to 7.0; a modelled GPU, Ampere on, is PCIe 4.0 to 6.0, a host's slot may
# be older) and the link widths GPUs are built with (x1 to x16: the PCIe base specification's x32 has none)
NVLINK_KINDS = ("nvlink3", "nvlink3-bridge", "nvlink4", "nvlink4-bridge", "nvlink5")
PCIE_GENERATIONS = (3, 4, 5, 6, 7)
PCIE_WIDTHS = (1, 2, 4, 8, 16)
PCIE_KIND = re.compile(rf"^pcie[{''.join(map(str, PCIE_GENERATIONS))}](-x({'|'.join(map(str, PCIE_WIDTHS))}))?$")


def _capability(entry: dict, where: str) -> tuple[int, int] | None:
    """A spec's ``compute_capability`` as (major, minor), the number NVIDIA lists (8.9, 12.0)."""
    value = entry.get("compute_capability")
    if value is None:
        return None
    found = CAPABILITY_SPELLING.match(str(value)) if isinstance(value, float) else None
    major = int(found.group(1)) if found else 0
    if not MODELLED_MAJORS[0] <= major <= MODELLED_MAJORS[1]:
        raise ConfigError(f"{where}: compute_capability must be a number major.minor as NVIDIA lists it, from "
                          f"{MODELLED_MAJORS[0]}.0 (Ampere) to {MODELLED_MAJORS[1]}.x (8.9, 12.0), got {quote(value)}")
    return major, int(found.group(2))


def _number(entry: dict, key: str, where: str, domain: tuple[float, float]) -> float:
    """``entry[key]``, a number within ``domain`` (3.35e3 is one: the strict YAML loader reads exponents as YAML 1.2
    does, ``sim.config_yaml``)."""
    low, high = domain
    value = entry.get(key)
    if value is None:
        raise ConfigError(f"{where}: needs {key}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:  # (NaN fails too)
        said = f"{value:g}" if isinstance(value, float) else quote(value)
        raise ConfigError(f"{where}: {key} must be a number at least {low:g} and at most {high:g}, got {said}")
    return float(value)


def _check_keys(entry: object, allowed: list[str], where: str, what: str = "a GPU spec") -> dict:
    """``entry``, a mapping of ``allowed`` keys only (``what``: the mapping, named in the message)."""
    if entry is None:
        raise ConfigError(f"{where}: missing (a mapping of {', '.join(allowed)})")
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping of {', '.join(allowed)}, got {quote(entry)}")
    unknown = [k for k in entry if k not in allowed]
    if unknown:
        named = " (the file holds one entry's fields at its top level, without the entry's name)" \
            if what == "a GPU spec" and isinstance(entry[unknown[0]], dict) else ""
        raise ConfigError(f"{where}: unknown key {quote(str(unknown[0]))}{named}; {what} has {', '.join(allowed)}")
    return entry


def gpu_from_entry(name: str, entry: object, where: str, source: str | None = None, listed: bool = True) -> GPUSpec:
    """A GPU spec from one entry in ``profiles/gpus.yaml``'s fields, every field checked (``where`` names it in
    messages); ``source``: what the spec cites when the entry names none (a user's file: the file itself).
    ``listed``: an entry of that table, which may have ``aliases`` (other tools' names that find it); a user's file
    is found by its path alone, so aliases there would mean nothing and are an unknown key."""
    optional = [key for key in GPU_OPTIONAL_FIELDS if listed or key != "aliases"]
    entry = _check_keys(entry, [*GPU_NUMBERS, "link", *optional], where)
    numbers = {key: _number(entry, key, where, domain) for key, domain in GPU_NUMBERS.items()
               if key not in GPU_OPTIONAL_NUMBERS or entry.get(key) is not None}
    if numbers.get("sm_count", 1.0) != int(numbers.get("sm_count", 1.0)):
        raise ConfigError(f"{where}: sm_count must be a whole number of streaming multiprocessors, got "
                          f"{numbers['sm_count']:g}")
    if numbers.get("reported_memory_gib", 0.0) > numbers["memory_gib"]:  # (a reservation only takes memory away)
        raise ConfigError(f"{where}: reported_memory_gib {numbers['reported_memory_gib']:g} is above memory_gib "
                          f"{numbers['memory_gib']:g}: a device reports its total less the driver's reservation")
    link = _check_keys(entry.get("link"), ["kind", *LINK_NUMBERS, "peer_access", "source"], f"{where}: link",
                       "a GPU spec's link")
    link_numbers = {key: _number(link, key, f"{where}: link", domain) for key, domain in LINK_NUMBERS.items()}
    peer_access = link.get("peer_access", True)
    if not isinstance(peer_access, bool):
        raise ConfigError(f"{where}: link: peer_access must be true or false, got {quote(peer_access)}")
    texts = {"source": entry.get("source", source), "link.kind": link.get("kind"),
             "link.source": link.get("source", source)}
    for key, text in texts.items():
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{where}: needs {key} (text)" if text is None else
                              f"{where}: {key} must be text, got {quote_yaml(text)}")
    _check_link(where, texts["link.kind"], link_numbers["bandwidth_gbps"])
    capability = _capability(entry, where)
    _check_memory_and_compute(where, numbers, capability)
    return GPUSpec(name=name, peak_flops=numbers["dense_bf16_tflops"] * 1e12,
                   memory_bytes=int(round(numbers["memory_gib"] * GIB)),
                   memory_bandwidth=numbers["memory_bandwidth_gbps"] * 1e9,
                   link=LinkSpec(kind=texts["link.kind"], bandwidth=link_numbers["bandwidth_gbps"] * 1e9,
                                 step_latency=link_numbers["step_latency_us"] * 1e-6, source=texts["link.source"],
                                 peer_access=peer_access),
                   source=texts["source"],
                   fp8_peak_flops=numbers["dense_fp8_tflops"] * 1e12 if "dense_fp8_tflops" in numbers else None,
                   reported_memory_bytes=int(round(numbers["reported_memory_gib"] * GIB))
                   if "reported_memory_gib" in numbers else None,
                   sm_count=int(numbers["sm_count"]) if "sm_count" in numbers else None,
                   l2_bytes=int(round(numbers["l2_mib"] * 2**20)) if "l2_mib" in numbers else None,
                   l2_bandwidth=numbers["l2_bandwidth_gbps"] * 1e9 if "l2_bandwidth_gbps" in numbers else None,
                   compute_capability=capability)


def _check_link(where: str, kind: str, link_gbps: float) -> None:
    """A GPU spec's link: a kind NVIDIA or PCI-SIG published, and a bandwidth a direction within its line rate."""
    if kind not in NVLINK_KINDS and not PCIE_KIND.match(kind):
        raise ConfigError(f"{where}: link.kind must be one of {', '.join(NVLINK_KINDS)} or "
                          f"pcie<generation>[-x<lanes>], generation {'/'.join(map(str, PCIE_GENERATIONS))} and lanes "
                          f"{'/'.join(map(str, PCIE_WIDTHS))} (pcie4-x16), got {quote(kind)}")
    ceiling = link_ceiling(kind)
    if link_gbps > ceiling:
        # NVIDIA's NVLink figures and PCI-SIG's x16 rates count both directions (H100's 900 GB/s): one of them copied
        # here is twice a direction's at most, so said
        both = (f": {link_gbps:g} is within both directions' {2 * ceiling:g}, the total NVIDIA and PCI-SIG publish; "
                "give one direction's, NCCL's figure as profiles/gpus.yaml does" if link_gbps <= 2 * ceiling else "")
        raise ConfigError(f"{where}: link: bandwidth_gbps {link_gbps:g} is above the {ceiling:g} GB/s a "
                          f"{kind} link carries a direction (its line rate; NCCL plans below it){both}")


def _check_memory_and_compute(where: str, numbers: dict[str, float], capability: tuple[int, int] | None) -> None:
    """A GPU spec's numbers against each other as every published GPU has them: its L2 against its DRAM, its FP8
    peak against its BF16 peak and its compute capability."""
    # An NVIDIA GPU's L2 is the memory-side cache every SM's DRAM traffic passes through, so it moves at least what the
    # DRAM does: every published pair has it faster, measured 2.5x (B200) to 6.5x (L40) in gpu-benches (the entries'
    # notes in profiles/gpus.yaml), 2.68x to 4.64x in the V100/A100/H100 peaks L2_BANDWIDTH_RATIO cites
    l2, dram = numbers.get("l2_bandwidth_gbps"), numbers["memory_bandwidth_gbps"]
    if l2 is not None and l2 < dram:
        raise ConfigError(f"{where}: l2_bandwidth_gbps {l2:g} is below memory_bandwidth_gbps {dram:g}: the DRAM's "
                          "bytes pass through the L2, measured 2.5 to 6.5 times faster on every GPU "
                          "(profiles/gpus.yaml)")
    # The L2 caches the DRAM's bytes, a slice of them (the largest in profiles/gpus.yaml: 128 MiB of 96 GB, the RTX
    # PRO 6000's)
    if numbers.get("l2_mib", 0.0) * 2**20 >= numbers["memory_gib"] * GIB:
        raise ConfigError(f"{where}: l2_mib {numbers['l2_mib']:g} is not below memory_gib {numbers['memory_gib']:g} "
                          f"({numbers['memory_gib'] * 1024:g} MiB): the L2 caches a slice of the GPU's memory")
    # the L2's bandwidth prices the bytes an L2 of l2_mib holds (sim.serving.elementwise): without its size none is
    if "l2_bandwidth_gbps" in numbers and "l2_mib" not in numbers:
        raise ConfigError(f"{where}: l2_bandwidth_gbps without l2_mib is read by nothing: the L2's bandwidth prices "
                          "the bytes an L2 of l2_mib holds; give l2_mib too, or drop it")
    # an FP8 tensor core does twice the BF16 one's work a clock: every dense_fp8_tflops in profiles/gpus.yaml is 2x
    # (1.999-2.025x) its datasheet's BF16 peak; one below the BF16 peak (the two swapped?) ran FP8 GEMMs slower than
    # BF16
    fp8 = numbers.get("dense_fp8_tflops")
    if fp8 is not None and fp8 < numbers["dense_bf16_tflops"]:
        raise ConfigError(f"{where}: dense_fp8_tflops {fp8:g} is below dense_bf16_tflops "
                          f"{numbers['dense_bf16_tflops']:g}: FP8 tensor cores run twice the BF16 peak on every "
                          "datasheet (profiles/gpus.yaml)")
    # and no datasheet pair is further apart than 4x: a GeForce's FP8 with FP16 accumulation beside its BF16 with FP32
    # accumulation (RTX 4090: 660.6 vs 165.2 dense TFLOPS, NVIDIA's Ada Lovelace whitepaper, Appendix A; RTX 5090: 838
    # vs 209.5, its Blackwell whitepaper), and an FP4 peak copied for FP8 (B200: 9 vs 2.25 PFLOPS dense) is 4x too.
    # Past it (1,979 beside 0.001 ran at exit 0) the BF16 peak is a typo, or the FP8 one another unit's
    if fp8 is not None and fp8 > FP8_OVER_BF16_MAX * numbers["dense_bf16_tflops"]:
        raise ConfigError(f"{where}: dense_fp8_tflops {fp8:g} is over {FP8_OVER_BF16_MAX:g}x dense_bf16_tflops "
                          f"{numbers['dense_bf16_tflops']:g}: FP8 tensor cores run 2x the BF16 peak (4x on a GeForce's "
                          "FP16-accumulate figures), on every datasheet")
    # FP8 tensor cores came with Ada and Hopper (compute capability 8.9 and 9.0): on an Ampere GPU (8.0, 8.6) vLLM runs
    # an FP8 checkpoint weight-only through Marlin at the BF16 peak (vllm/model_executor/layers/quantization/fp8.py:
    # use_marlin where not current_platform.has_device_capability(89)), so an FP8 peak there is read as no GPU runs it
    if "dense_fp8_tflops" in numbers and capability is not None and capability < FP8_CAPABILITY:
        raise ConfigError(f"{where}: dense_fp8_tflops with compute_capability {capability[0]}.{capability[1]}: FP8 "
                          f"tensor cores start at {FP8_CAPABILITY[0]}.{FP8_CAPABILITY[1]} (Ada, Hopper), and vLLM runs "
                          "FP8 weights through Marlin at the BF16 peak below it: drop dense_fp8_tflops")


@lru_cache(maxsize=None)
def gpu_spec(name: str) -> GPUSpec:
    """The spec of GPU ``name``: an entry of ``profiles/gpus.yaml``, or a path (written with a '/' or ending in
    .yaml) to a YAML file of one GPU in that entry's fields (a GPU kvsim does not list: its datasheet's numbers)."""
    table = _read_table("gpus.yaml")
    if name not in table and names_a_path(name):
        path = Path(name)
        try:
            return gpu_from_entry(name, read_config_file(path, "GPU spec"), f"GPU spec {path}",
                                  source=f"GPU spec {path}", listed=False)
        except ConfigError:
            from sim.file_kinds import other_kind  # (an overlay, an NS-3 table, a trace given as the GPU)

            said = other_kind(path, "gpu")
            if said is not None:
                raise ConfigError(f"GPU spec {path}: {said}") from None
            raise
    return gpu_from_entry(name, _lookup(table, name, "GPU", "gpus.yaml", f"; {GPU_PATH_HINT}"),
                          f"profiles/gpus.yaml: GPU {name!r}")


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
    # (os.path.exists: False where the system cannot say, a name too long among them; pathlib's raised OSError)
    if not isinstance(value, str) or (names_a_path(value) and (os.path.exists(value) or _explicit_path(value))):
        return None
    return _spellings("models.yaml").get(_spelling(value))


def _explicit_path(value: str) -> bool:
    """A value no Hugging Face id is written as: from the current, a parent or the root folder or home (``./``,
    ``../``, ``/``, ``~``), or a folder (a trailing ``/``). ``--set model=./Llama-3.1-8B/``, a local checkpoint's
    folder that is not there, ran the bundled llama-3.1-8b unsaid (its spelling, slashes and dots dropped, is the
    entry's), where an absolute path said 'does not exist'."""
    return value.startswith(("./", "../", "/", "~")) or value.endswith(("/", os.sep))


def canonical_gpu(value: object) -> str | None:
    """The profiles/gpus.yaml entry that ``value`` names however it is spelled or aliased (``RTXPRO6000``,
    ``NVIDIA GeForce RTX 4090``), or None; a value written as a path names a GPU spec file, never an entry."""
    if not isinstance(value, str) or names_a_path(value):
        return None
    return _spellings("gpus.yaml").get(_spelling(value))


def resolve_gpu(name: str) -> str:
    """GPU ``name`` as ``hardware.gpu`` reads it: its profiles/gpus.yaml entry under any spelling (``canonical_gpu``)
    or a GPU spec file, loaded now so that an unknown name (the message lists the known GPUs) or a bad file is
    refused before any work; for programs that take a GPU outside the config."""
    gpu = canonical_gpu(name) or name
    gpu_spec(gpu)
    return gpu
