"""NVIDIA AIConfigurator's measured collectives (sim.serving.aic_collectives): the engine's own all-reduce table and
NCCL's table, as .txt or Parquet, each against the rows it holds."""

from __future__ import annotations

import pandas as pd
import pytest

from sim.config import load_config
from sim.errors import ConfigError
from sim.serving.compute_backend import compute_model
from sim.serving.measured_collectives import MeasuredCollectives

MIB = 1 << 20


AIC_HEADER = "framework,version,device,op_name,kernel_source,allreduce_dtype,num_gpus,message_size,latency,backend\n"


def _aic_rows(rows: list[tuple[str, int, int, float]]) -> str:
    """AIConfigurator custom_allreduce_perf.txt rows: (kernel_source, num_gpus, message_size in elements, ms)."""
    return AIC_HEADER + "".join(f"vLLM,0.20.0,NVIDIA A100-SXM4-80GB,all_reduce,{source},bfloat16,{ranks},{size},{ms},"
                                f"{source.split('_')[-1]}\n" for source, ranks, size, ms in rows)


def test_an_aiconfigurator_all_reduce_table_drives_the_step(tmp_path):
    """AIConfigurator's measured all-reduce (vLLM's own dispatch; sizes in bf16 elements, ms): its CUDA-graph rows,
    interpolated at bytes = elements x 2, price the TP group's all-reduces; eager rows beside them are not read; other
    collectives and groups fall back to the analytic model."""
    rows = [("vLLM_custom_graph", 8, 262144, 0.01952), ("vLLM_custom_graph", 8, 524288, 0.02151),
            ("vLLM_custom_eager", 8, 262144, 0.0465), ("vLLM_custom_eager", 8, 524288, 0.0467),
            ("vLLM_custom_graph", 2, 262144, 0.01067), ("vLLM_custom_graph", 2, 524288, 0.01514)]
    (tmp_path / "custom_allreduce_perf.txt").write_text(_aic_rows(rows))
    sets = ["hardware.gpu=a100-80gb", "serving.tensor_parallel_size=8",
            f"compute.collectives={tmp_path / 'custom_allreduce_perf.txt'}"]
    model = compute_model(load_config(None, sets=sets)).comm.collectives
    assert isinstance(model, MeasuredCollectives)
    assert model.all_reduce(768 * 1024, 8) == pytest.approx((19.52 + 21.51) / 2 * 1e-6)  # 0.75 MiB: halfway
    analytic = compute_model(load_config(None, sets=sets[:2])).comm.collectives
    assert model.all_gather(MIB, 8) == analytic.all_gather(MIB, 8)
    assert ("all_reduce", 2) not in model.tables  # a group the run does not use is not read


def test_aiconfigurators_parquet_all_reduce_table_drives_the_step(tmp_path):
    """AIConfigurator stores its tables as Parquet (systems/data/<gpu>/comm/vllm/<version>/
    custom_allreduce_perf.parquet, snapshot 095f58a51), the collector's CSV columns: read as its .txt is. Rows of
    its H100 vLLM 0.19.0 table at TP 4 (bf16 elements, ms): 262,144 elements (512 KiB) 0.011177 ms and 524,288
    (1 MiB) 0.012625 ms by CUDA graph, the eager rows beside them (0.022478, 0.023211) not read; 768 KiB: halfway."""
    frame = pd.DataFrame({"framework": "vLLM", "version": "0.19.0", "device": "NVIDIA H100 80GB HBM3",
                          "op_name": "all_reduce",
                          "kernel_source": ["vLLM_custom_graph", "vLLM_custom_eager"] * 2, "allreduce_dtype": "bfloat16",
                          "num_gpus": 4, "message_size": [262144, 262144, 524288, 524288],
                          "latency": [0.011177, 0.022478, 0.012625, 0.023211], "backend": ["vllm_graph", "vllm_eager"] * 2})
    path = tmp_path / "custom_allreduce_perf.parquet"
    frame.to_parquet(path)
    model = compute_model(load_config(None, sets=["hardware.gpu=h100-sxm", "serving.tensor_parallel_size=4",
                                                  f"compute.collectives={path}"])).comm.collectives
    assert isinstance(model, MeasuredCollectives)
    assert model.all_reduce(768 * 1024, 4) == pytest.approx((11.177 + 12.625) / 2 * 1e-6)


# AIConfigurator's H100 NCCL table (aic-core/src/aiconfigurator_core/systems/data/h100_sxm/comm/nccl/2.29.2/
# nccl_perf.parquet, snapshot 095f58a51): 8 GPUs, message_size in elements (half: 2 bytes), latency in ms
H100_NCCL_8 = [("all_gather", "half", 1048576, 0.02218), ("all_gather", "half", 2097152, 0.03341),
               ("all_gather", "int8", 1048576, 0.01714), ("all_gather", "int8", 2097152, 0.02213),
               ("alltoall", "half", 1048576, 0.01858), ("alltoall", "half", 2097152, 0.02620),
               ("reduce_scatter", "half", 1048576, 0.01790), ("reduce_scatter", "half", 2097152, 0.02988),
               ("all_reduce", "half", 1048576, 0.03818), ("all_reduce", "half", 2097152, 0.05049),
               ("all_reduce", "int8", 1048576, 0.02785), ("all_reduce", "int8", 2097152, 0.03810)]


@pytest.mark.parametrize("suffix", [".parquet", ".txt"])
def test_aiconfigurators_nccl_table_prices_each_collective_at_its_whole_buffer(tmp_path, suffix):
    """nccl_perf (AIConfigurator's nccl-tests sweep: -b S -e S, S in elements) was refused ("missing column
    allreduce_dtype"). Its half rows drive the run; nccl-tests' S is the whole buffer (an all-reduce's input, an
    all-gather's gathered output, a reduce-scatter's input), so a run's all-gather of 2 MiB in all over 8 GPUs is the
    row of 1,048,576 elements, 0.02218 ms, and not its int8 twin (0.01714) nor the 256 KiB share's."""
    frame = pd.DataFrame(H100_NCCL_8, columns=["op_name", "nccl_dtype", "message_size", "latency"]).assign(
        framework="TRTLLM", version="2.29.2", device="NVIDIA H100 80GB HBM3", kernel_source="NCCL", num_gpus=8)
    path = tmp_path / f"nccl_perf{suffix}"
    frame.to_parquet(path) if suffix == ".parquet" else frame.to_csv(path, index=False)
    model = compute_model(load_config(None, sets=["hardware.gpu=h100-sxm", "serving.tensor_parallel_size=8",
                                                  f"compute.collectives={path}"])).comm.collectives
    assert isinstance(model, MeasuredCollectives)
    assert model.all_gather(2 * MIB, 8) == pytest.approx(0.02218e-3)
    assert model.all_gather(4 * MIB, 8) == pytest.approx(0.03341e-3)
    assert model.reduce_scatter(3 * MIB, 8) == pytest.approx((0.01790 + 0.02988) / 2 * 1e-3)  # halfway
    assert model.all_reduce(2 * MIB, 8) == pytest.approx(0.03818e-3)
    assert not any(c == "alltoall" for c, _ in model.tables)


@pytest.mark.parametrize("kind", ["nccl", "custom"])
def test_a_row_of_blank_latency_is_counted_in_a_note_not_run_as_nan(tmp_path, caplog, kind):
    """A row whose latency is blank was read as NaN: interpolated into the sizes beside it, it made a TP run's step
    times NaN (makespan_s, throughput, busy fractions null in the report) and the console summary then failed (exit 1:
    '>' between None and int, hfuzz8). It is not used, and said so in one note, as a Vidur table's blank rows are; the
    rows beside it price its size (halfway between them: 3 MiB between NCCL's 2 and 4, 768 KiB between 512 KiB and
    1 MiB)."""
    if kind == "nccl":
        frame = pd.DataFrame(H100_NCCL_8, columns=["op_name", "nccl_dtype", "message_size", "latency"]).assign(
            kernel_source="NCCL", num_gpus=8)
        frame.loc[len(frame)] = ["all_reduce", "half", 1572864, None, "NCCL", 8]  # (3 MiB, blank)
        path, lo, hi = tmp_path / "nccl_perf.txt", 0.03818, 0.05049
        frame.to_csv(path, index=False)
    else:
        rows = [("vLLM_custom_graph", 8, 262144, 0.01952), ("vLLM_custom_graph", 8, 393216, ""),
                ("vLLM_custom_graph", 8, 524288, 0.02151)]
        path, lo, hi = tmp_path / "custom_allreduce_perf.txt", 0.01952, 0.02151
        path.write_text(_aic_rows(rows))
    with caplog.at_level("WARNING", logger="kvsim.profile"):
        model = compute_model(load_config(None, sets=["hardware.gpu=h100-sxm", "serving.tensor_parallel_size=8",
                                                      f"compute.collectives={path}"])).comm.collectives
    assert [r.getMessage() for r in caplog.records if "not used" in r.getMessage()] == [
        f"kvsim: note: {path}: 1 of {13 if kind == 'nccl' else 3} rows not used (blank latency: 1)"]
    size = 3 * MIB if kind == "nccl" else 768 * 1024  # (the blank row's size)
    assert model.all_reduce(size, 8) == pytest.approx((lo + hi) / 2 * 1e-3)


def test_an_nccl_table_without_half_rows_is_refused_naming_its_dtypes(tmp_path):
    frame = pd.DataFrame([r for r in H100_NCCL_8 if r[1] == "int8"],
                         columns=["op_name", "nccl_dtype", "message_size", "latency"]).assign(kernel_source="NCCL",
                                                                                              num_gpus=8)
    path = tmp_path / "nccl_perf.parquet"
    frame.to_parquet(path)
    with pytest.raises(ConfigError, match=r"nccl_perf\.parquet: no half rows .*nccl_dtype: int8"):
        compute_model(load_config(None, sets=["hardware.gpu=h100-sxm", "serving.tensor_parallel_size=8",
                                              f"compute.collectives={path}"]))


def test_a_file_named_parquet_that_is_not_is_refused_naming_it(tmp_path):
    path = tmp_path / "custom_allreduce_perf.parquet"
    path.write_text(AIC_HEADER + "vLLM,0.19.0,H100,all_reduce,vLLM_custom_graph,bfloat16,4,128,0.004,vllm_graph\n")
    with pytest.raises(ConfigError, match=r"custom_allreduce_perf\.parquet.*cannot read it as Parquet"):
        compute_model(load_config(None, sets=["hardware.gpu=h100-sxm", "serving.tensor_parallel_size=4",
                                              f"compute.collectives={path}"]))


@pytest.mark.parametrize("text, message", [
    (AIC_HEADER.replace("latency,", "time,") + "x\n", "missing column"),
    (_aic_rows([("vLLM_custom_graph", 8, 128, 0.005)]).replace("bfloat16", "int8"), "allreduce_dtype int8"),
    (_aic_rows([("vLLM_custom_graph", 8, 128, 0.005)]).replace("all_reduce,", "all_gather,"), "no all_reduce rows"),
    (_aic_rows([("vLLM_custom_graph", 8, 128, 0.005)]), "1 size for 8 workers"),
    (_aic_rows([("vLLM_custom_graph", 8, 128, "abc")]), "not a number"),
])
def test_a_bad_aiconfigurator_table_is_refused_naming_it(tmp_path, text, message):
    path = tmp_path / "custom_allreduce_perf.txt"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        compute_model(load_config(None, sets=["hardware.gpu=a100-80gb", "serving.tensor_parallel_size=8",
                                              f"compute.collectives={path}"]))
