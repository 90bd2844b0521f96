"""Which compute model a config selects, with the tensor-parallel collectives every model adds.

``compute.backend`` picks the roofline or a profiled model; for ``profiled``, ``compute.profile``
names a directory whose contents say which family (a Vidur profile or an LLMServingSim bundle).
Collectives come from a measured table when there is one, else the ring model over the GPU's link; the host's
part of a step (``sim.serving.host_time``) wraps the model when the config gives one, and steps run at their CUDA
graph's size (``sim.serving.cudagraph``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sim.config import Config
from sim.errors import ConfigError, quote
from sim.kv_dtype import kv_dtype_bytes
from sim.model_shape import DTYPE_BYTES, ModelSpec
from sim.serving.attention_backend import capability_of
from sim.serving.attention_waves import kernel_attention_efficiency
from sim.serving.collectives import MULTICAST, RingCollectives, TensorParallelComm, peer_kernel
from sim.serving.compute import RooflineCompute
from sim.serving.compute_model import ComputeModel
from sim.serving.cudagraph import CudagraphSizes, PaddedCompute, config_cudagraph_sizes
from sim.serving.engine_limits import batch_limits, block_size
from sim.serving.host_time import US, HostBoundCompute, HostTime
from sim.serving.kernel_floors import KernelFloors
from sim.serving.llmservingsim_compute import LLMServingSimCompute
from sim.serving.measured_collectives import MeasuredCollectives, bundle_hardware_yaml
from sim.serving.moe import dispatch_bytes, sequence_parallel_size
from sim.serving.nccl_protocols import nccl_protocols
from sim.serving.profile_files import note_once, read_profile_yaml
from sim.serving.vidur_compute import ProfiledCompute, VidurAttention, VidurProfile
from sim.specs import LinkSpec, canonical_gpu, canonical_model, gpu_spec, model_spec


def gpu_link(config: Config) -> LinkSpec:
    """The GPU's own link, with ``hardware.gpu_link_*`` overrides applied. An override is a what-if, but not past
    the GPU's memory bandwidth: the bytes a GPU sends are read from its memory and written into its peer's, so no
    link moves them faster (every published part's is far below: NVLink 5's 900 GB/s a direction beside B200's
    8,000 GB/s of HBM3e, NVLink 4's 450 beside H100 SXM's 3,350, PCIe 5.0 x16's 64 beside the RTX 5090's 1,792:
    NVIDIA's datasheets, the entries of profiles/gpus.yaml); 10^6 GB/s beside an H100 ran its collectives free."""
    spec = gpu_spec(config.hardware.gpu)
    link = spec.link
    hw = config.hardware
    if hw.gpu_link_gbps is not None and hw.gpu_link_gbps * 1e9 > spec.memory_bandwidth:
        raise ConfigError(f"hardware.gpu_link_gbps {hw.gpu_link_gbps:g} is above {config.hardware.gpu}'s memory "
                          f"bandwidth ({spec.memory_bandwidth / 1e9:g} GB/s): a link moves no byte faster than the "
                          "GPU's memory gives it (its own link: "
                          f"{link.bandwidth / 1e9:g} GB/s a direction)")
    return LinkSpec(
        kind=link.kind if hw.gpu_link_gbps is None else "override",
        bandwidth=link.bandwidth if hw.gpu_link_gbps is None else hw.gpu_link_gbps * 1e9,
        step_latency=link.step_latency if hw.gpu_link_latency_us is None else hw.gpu_link_latency_us * 1e-6,
        source=link.source if hw.gpu_link_gbps is None and hw.gpu_link_latency_us is None else "hardware.gpu_link_*",
        peer_access=link.peer_access,
    )


# config.yaml's hardware.pcie_gbps: PCIe 5.0 x16, 32 GT/s x 16 lanes x 128/130 / 8 = 63 GB/s a direction (PCI-SIG)
PCIE_DEFAULT_GBPS = 63.0


def pcie_bandwidth(config: Config) -> float:
    """``hardware.pcie_gbps`` in bytes/s, bounded as ``gpu_link`` bounds ``gpu_link_gbps``: the bytes a host link
    brings in are written into the GPU's memory, so none is faster than its memory bandwidth (1e30 ran a cluster's
    lower tiers' traffic free). A GPU spec file whose memory is slower than PCIe 5.0 x16 (config.yaml's 63 GB/s)
    still takes that: the bound is the larger of the two, so the default never refuses a GPU a user describes."""
    spec = gpu_spec(config.hardware.gpu)
    gbps = config.hardware.pcie_gbps
    bound = max(spec.memory_bandwidth, PCIE_DEFAULT_GBPS * 1e9)
    if gbps * 1e9 > bound:
        raise ConfigError(f"hardware.pcie_gbps {gbps:g} is above {config.hardware.gpu}'s memory bandwidth "
                          f"({spec.memory_bandwidth / 1e9:g} GB/s): a host link brings no byte into the GPU faster "
                          f"than its memory takes it (PCIe 5.0 x16: {PCIE_DEFAULT_GBPS:g} GB/s a direction)")
    return gbps * 1e9


def analytic_collectives(config: Config) -> RingCollectives:
    """The collectives over the GPU's link as the engine runs them: NCCL, and unless ``serving.all_reduce=nccl``
    vLLM's peer-memory kernels and multicast all-reduce where the GPU's topology has them."""
    own = gpu_spec(config.hardware.gpu).link  # (an overridden link keeps the GPU's topology)
    switch = MULTICAST.get(own.kind)
    if config.serving.all_reduce == "nccl":  # NCCL alone: no vLLM kernel, no multimem; NCCL's own NVLS stays
        kernel, switch = None, None if switch is None else replace(switch, ranges=())
    else:
        kernel = peer_kernel(own)
    protocols = nccl_protocols(own.kind.startswith("nvlink"), capability_of(config.hardware.gpu)[0])
    return RingCollectives.over(gpu_link(config), kernel, switch, protocols)


def collectives_model(config: Config, bundle: Path | None = None) -> RingCollectives | MeasuredCollectives:
    """Measured collectives (``compute.collectives``, else a bundle's ``hardware.yaml``) over the ring model of
    the GPU's link (with vLLM's NVLink all-reduce kernels unless ``serving.all_reduce=nccl``: a measured table is
    the engine's own all-reduce, they stand in only where it has no rows); the ring model alone when nothing was
    measured. A bundle's ``hardware.yaml`` is a default: a
    link stated in ``hardware.gpu_link_*`` replaces it (LLMServingSim's precedence: its profiler writes the file's
    ``defaults`` "the simulator inherits from when a cluster config omits the key", profiler/core/hardware.py). A
    setting that could change nothing (any of them at TP 1, or a link override beside a ``compute.collectives``
    table) is an error."""
    hw = config.hardware
    ring = analytic_collectives(config)
    link_keys = [f"hardware.{k}" for k, v in (("gpu_link_gbps", hw.gpu_link_gbps),
                                              ("gpu_link_latency_us", hw.gpu_link_latency_us)) if v is not None]
    if config.serving.tensor_parallel_size == 1 and config.serving.data_parallel_size == 1:
        inert = link_keys + (["compute.collectives"] if config.compute.collectives else [])
        if inert:
            raise ConfigError(f"{', '.join(inert)} set, but serving.tensor_parallel_size is 1 (and "
                              "data_parallel_size 1): no GPU-to-GPU collectives")
    source = config.compute.collectives or (bundle_hardware_yaml(bundle) if bundle is not None and not link_keys
                                            else None)
    if source is None:
        return ring
    tp, dp = config.serving.tensor_parallel_size, config.serving.data_parallel_size
    used = frozenset({tp, dp * tp})  # the TP group's collectives; a data-parallel group's MoE exchange over D x TP
    measured = MeasuredCollectives.load(source, ring, used)
    if link_keys:
        raise ConfigError(f"{', '.join(link_keys)} set, but collectives are measured ({measured.source}); "
                          "drop the override or the table")
    if tp > 1 and not measured.covers("all_reduce", tp):
        # (a table of other group sizes, Vidur's send_recv.csv alone, AIConfigurator's NCCL 2.23 sweeps without
        # all_reduce rows: the two all-reduces a layer are not the table's)
        note_once(measured.source, f"no all_reduce rows for {tp} GPUs (serving.tensor_parallel_size): the analytic "
                                   "model of the GPU's link prices this run's all-reduces")
    return measured


def bundle_gpu_misfit(directory: Path, gpu: str) -> str | None:
    """Why an LLMServingSim bundle cannot time steps on ``gpu``, if it cannot: its meta.yaml names the GPU it was
    measured on (``gpu``, as nvidia-smi names it), and another GPU of profiles/gpus.yaml than ``hardware.gpu`` would
    time the steps on one GPU and size memory and links on the other (a GPU either side does not list: not judged).
    The serving modes and ``--check-calibration`` alike; a folder without meta.yaml is no bundle to judge."""
    if not (directory / "meta.yaml").is_file():
        return None
    stated = read_profile_yaml(directory / "meta.yaml", "LLMServingSim bundle file").get("gpu")
    measured, served = canonical_gpu(stated), canonical_gpu(gpu)
    if measured is None or served is None or measured == served:
        return None
    return f"compute.profile {directory}: measured on {quote(str(stated))} ({measured}, meta.yaml gpu), but hardware.gpu is {gpu}"


# The shape of one decoder layer and the LM head, which a bundle's tables time (its profiler runs one layer:
# meta.yaml engine_effective.hf_overrides num_hidden_layers 1, so a model of the same layers at another depth fits)
LAYER_SHAPE = ("hidden_size", "num_attention_heads", "num_kv_heads", "head_dim", "intermediate_size", "vocab_size",
               "num_experts", "num_experts_per_tok", "moe_intermediate_size", "shared_expert_intermediate_size",
               "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")


def bundle_model_misfit(directory: Path, model: ModelSpec, name: str) -> str | None:
    """Why an LLMServingSim bundle cannot time ``model``'s layers, if it cannot: its meta.yaml names the model it
    measured (``model``, a Hugging Face id), and a model of profiles/models.yaml whose layers have another shape
    (``LAYER_SHAPE``: Llama 3.1 8B's 4,096-wide layers timed as Llama 3.1 70B's 8,192-wide ones) would price every
    step of ``model`` at the measured model's widths (a model profiles/models.yaml does not list: not judged; the
    head and width counts meta.yaml's hf_overrides state are checked where the bundle is read)."""
    if not (directory / "meta.yaml").is_file():
        return None
    stated = read_profile_yaml(directory / "meta.yaml", "LLMServingSim bundle file").get("model")
    measured = canonical_model(stated)
    if measured is None:
        return None
    spec = model_spec(measured)
    key = next((k for k in LAYER_SHAPE if getattr(spec, k) != getattr(model, k)), None)
    if key is None:
        return None
    return (f"compute.profile {directory}: measured {quote(str(stated))} ({measured}, meta.yaml model) of {key} "
            f"{getattr(spec, key)}, but model {name} has {getattr(model, key)}")


def bundle_dtype_misfit(directory: Path, model: ModelSpec, dtype: str) -> str | None:
    """Why an LLMServingSim bundle cannot time steps at ``serving.dtype`` ``dtype``, if it cannot: its meta.yaml's
    ``variant`` names the precision it measured (``bf16``), and a serving dtype of another width (fp32, fp8) would
    take its times unchanged while sizing weights and KV at the other (a quantized variant, or a model whose
    checkpoint is quantized, is not judged: its weights are not ``serving.dtype``'s)."""
    if model.weight_quantization is not None or not (directory / "meta.yaml").is_file():
        return None
    variant = read_profile_yaml(directory / "meta.yaml", "LLMServingSim bundle file").get("variant")
    if variant not in ("bf16", "fp16", "fp32") or DTYPE_BYTES[variant] == DTYPE_BYTES[dtype]:
        return None
    return f"compute.profile {directory}: measured in {variant} (meta.yaml variant), but serving.dtype is {dtype}"


def profile_misfit(directory: Path, model: ModelSpec, name: str, bundle: bool) -> str | None:
    """Why a profile cannot time ``model``'s layers, if it cannot: a Vidur profile times q/k/v/o attention (not
    multi-head latent attention) and has no expert operators. (An LLMServingSim bundle names its operators, so
    ``LLMServingSimCompute.load`` checks them against the model: MLA's or q/k/v/o's; its moe.csv times the whole
    MoE block, shared experts included.) Neither times a hybrid model's sliding-window layers: their attention
    over the last window of keys is not a profiled point. The serving modes and ``--check-calibration`` alike."""
    if model.is_hybrid_attention:
        return (f"compute.profile {directory}: {name} mixes sliding-window and full-attention layers, and a profile "
                "times full attention only")
    if model.linear_attention is not None:
        return (f"compute.profile {directory}: {name} has Gated DeltaNet (linear-attention) layers, and a profile "
                "times attention layers only")
    if bundle:
        return None
    if model.is_mla:
        return (f"compute.profile {directory}: a Vidur profile times q/k/v/o attention, and {name} has multi-head "
                "latent attention")
    if model.is_moe:
        return (f"compute.profile {directory}: a Vidur profile (mlp.csv) has no expert operators, and {name} is a "
                "mixture of experts")
    return None


def compute_model(config: Config) -> ComputeModel:
    """The compute model that ``compute.backend`` selects, with the host's part of each step when one is given
    (``sim.serving.host_time``)."""
    graphs = config_cudagraph_sizes(config)
    model = gpu_compute_model(config)
    if graphs.sizes:
        model = PaddedCompute(model, graphs, config.serving.data_parallel_size, sequence_parallel_size(
            config.serving.tensor_parallel_size, config.serving.enable_expert_parallel))
    host = host_time(config, graphs)
    return model if host.is_zero else HostBoundCompute(model, host)


def host_time(config: Config, graphs: CudagraphSizes) -> HostTime:
    """The host costs ``compute.host_step_us``, ``host_sequence_us`` and ``launch_layer_us`` give."""
    c = config.compute
    return HostTime(c.host_step_us * US, c.host_sequence_us * US, c.launch_layer_us * US,
                    model_spec(config.model).num_layers, graphs.largest, config.serving.async_scheduling)


def attention_efficiency(config: Config) -> float:
    """``compute.attention_efficiency``, or where it is null the configured GPU's attention kernel's."""
    configured = config.compute.attention_efficiency
    return configured if configured is not None else kernel_attention_efficiency(config.hardware.gpu)


def roofline_compute(config: Config, tensor_parallel_size: int, comm: TensorParallelComm | None = None
                     ) -> RooflineCompute:
    """The roofline of the configured model, GPU and dtypes at ``tensor_parallel_size``: ``compute``'s efficiencies
    and kernel floors, with ``comm``'s collectives (None: none)."""
    model, c = model_spec(config.model), config.compute
    dtype = DTYPE_BYTES[config.serving.dtype]
    kv = kv_dtype_bytes(model, config.serving.dtype, config.serving.kv_cache_dtype)
    return RooflineCompute(model, gpu_spec(config.hardware.gpu), dtype, kv, tensor_parallel_size,
                           flops_efficiency=c.flops_efficiency, bandwidth_efficiency=c.bandwidth_efficiency,
                           comm=comm, data_parallel_size=config.serving.data_parallel_size,
                           expert_parallel=config.serving.enable_expert_parallel,
                           floors=KernelFloors.from_us(c.gemm_floor_us, c.attention_floor_us, c.attention_tile_us),
                           attention_efficiency=attention_efficiency(config),
                           graph_tokens=config_cudagraph_sizes(config).largest)


# A step past this many times a Vidur mlp.csv's largest token count is noted: its layer time is extrapolated linearly
# from the table's two largest points (sim.serving.profile_grid.interpolate), whose slope at a few tokens is a
# memory-bound GEMM's, not the compute-bound slope of a long prefill (the bundled A100 mlp.csv cut to its 1-4 token
# rows priced three Mooncake requests' prefills at a mean TTFT of 0.124 s, the whole table at 0.588 s: exit 0,
# unsaid). Twice: a little headroom over the top point; Vidur's own profiles reach 32,768 tokens.
FAR_EXTRAPOLATION = 2


def note_far_extrapolation(profile: VidurProfile, step_tokens: int, tensor_parallel_size: int) -> None:
    """A note (once a file) when the run's largest step (``serving.max_num_batched_tokens``, resolved) is far beyond
    the tokens ``profile`` measured."""
    top = int(profile.tokens.max())
    if step_tokens > FAR_EXTRAPOLATION * top:
        note_once(profile.source, f"profiled up to {top:,} tokens at tensor parallel size {tensor_parallel_size}; this "
                                  f"run's steps reach {step_tokens:,} (serving.max_num_batched_tokens), priced by "
                                  "extrapolating its two largest points linearly")


def gpu_compute_model(config: Config) -> RooflineCompute | ProfiledCompute | LLMServingSimCompute:
    """The GPU's part of a step: the model ``compute.backend`` selects."""
    model = model_spec(config.model)
    dtype = DTYPE_BYTES[config.serving.dtype]
    tp = config.serving.tensor_parallel_size
    bundle = None
    if config.compute.backend == "profiled":
        if not config.compute.profile:
            raise ConfigError("compute.backend is 'profiled' but compute.profile (a profile directory) is not set")
        directory = Path(config.compute.profile)
        if not (directory / "mlp.csv").is_file():
            if not (directory / "meta.yaml").is_file():
                raise ConfigError(f"compute.profile {directory}: neither a Vidur profile (mlp.csv) nor an LLMServingSim "
                                  "bundle (meta.yaml + tpN/*.csv) found there")
            bundle = directory
    dp = config.serving.data_parallel_size
    comm = TensorParallelComm(collectives_model(config, bundle), tp, model.num_layers,
                              model.hidden_size * dtype, model.vocab_size * dtype, model.moe_layers, dp,
                              dispatch_bytes(model, dtype) if model.is_moe else None,
                              config.serving.enable_expert_parallel)
    roofline = roofline_compute(config, tp, comm)
    if bundle is None and config.compute.skew_correction != "auto":
        raise ConfigError(f"compute.skew_correction is '{config.compute.skew_correction}', but it applies to "
                          "LLMServingSim bundles only (compute.backend 'profiled' with a bundle in compute.profile)")
    if config.compute.backend == "roofline":
        if config.compute.profile:
            raise ConfigError(f"compute.profile is set ({config.compute.profile}), but compute.backend 'roofline' does not "
                              "read it: set compute.backend=profiled to use it, or compute.profile=null for the roofline")
        return roofline
    directory = Path(config.compute.profile)
    other_gpu = bundle_gpu_misfit(directory, config.hardware.gpu) if bundle is not None else None
    if other_gpu:
        raise ConfigError(f"{other_gpu}: set hardware.gpu to the GPU the bundle measured")
    other_model = bundle_model_misfit(directory, model, config.model) if bundle is not None else None
    if other_model:
        raise ConfigError(f"{other_model}: set model to the model the bundle measured, or use compute.backend "
                          "'roofline'")
    other_dtype = bundle_dtype_misfit(directory, model, config.serving.dtype) if bundle is not None else None
    if other_dtype:
        raise ConfigError(f"{other_dtype}: set serving.dtype to the precision the bundle measured")
    unfit = profile_misfit(directory, model, config.model, bundle is not None)
    if unfit:
        bundle_hint = ("" if model.is_hybrid_attention else
                       "an LLMServingSim bundle of this model (with moe.csv) or " if model.is_moe else
                       "an LLMServingSim bundle of this model or " if model.is_mla else "")
        raise ConfigError(f"{unfit}; use {bundle_hint}compute.backend 'roofline'")
    if bundle is None:
        attention = directory / "attention.csv"
        profile = VidurProfile.load(directory / "mlp.csv", model, tp)
        note_far_extrapolation(profile, batch_limits(config)[1], tp)
        return ProfiledCompute(profile, roofline,
                               VidurAttention.load(attention, model, tp, block_size(config))
                               if attention.is_file() else None)
    if dp > 1 and not config.serving.enable_expert_parallel:
        raise ConfigError(f"compute.profile {directory}: an LLMServingSim bundle times its experts expert parallel "
                          "(moe.csv), not split by width as serving.enable_expert_parallel false runs them; set it "
                          "true or use compute.backend 'roofline'")
    compute = LLMServingSimCompute.load_kept(directory, model, tp, config.compute.skew_correction, dp)
    compute.comm = comm
    return compute
