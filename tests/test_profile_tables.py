"""Measured compute tables (Vidur CSVs, LLMServingSim bundles): loading, rows set aside and counted, refusals,
and step times by hand."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from sim.config import load_config
from sim.errors import ConfigError
from sim.serving.compute import StepShape
from sim.serving.compute_backend import gpu_compute_model
from sim.serving.vidur_compute import VidurProfile
from sim.specs import model_spec
from tests.conftest import ROOT


def test_newer_llmservingsim_bundle_format_by_hand(tmp_path):
    """A bundle in the newer layout: attention rows tagged by kernel and decode_q_len, a prefill_key axis, an
    extra per-layer operator (qk_norm), and per-shard shapes in meta.yaml. Step time by hand."""
    from pathlib import Path

    from sim.serving.llmservingsim_compute import LLMServingSimCompute

    tp = Path(tmp_path) / "tp1"
    tp.mkdir()
    (Path(tmp_path) / "meta.yaml").write_text(
        "tp_degrees: [1]\nengine_effective:\n  hf_overrides: {num_attention_heads: 16, num_key_value_heads: 4}\n")
    ops = ["embedding", "final_layernorm", "layernorm", "qkv_proj", "qk_norm", "o_proj", "gate_up_proj", "act_fn",
           "down_proj", "rotary_emb"]
    (tp / "dense.csv").write_text("layer,tokens,time_us\n" + "".join(f"{op},1,1\n{op},101,101\n" for op in ops))
    (tp / "per_sequence.csv").write_text("layer,sequences,time_us\nlm_head,1,100\nlm_head,11,200\nsampler,1,10\nsampler,11,10\n")
    (tp / "attention.csv").write_text(
        "layer,prefill_chunk,prefill_key,n_decode,kv_decode,decode_q_len,time_us\n"
        "attention,0,0,1,100,1,10\nattention,0,0,1,300,1,30\nattention,0,0,2,100,1,20\nattention,0,0,2,300,1,40\n"
        "attention,0,0,1,100,2,999\n")
    model = LLMServingSimCompute.load(Path(tmp_path), model_spec("llama-3-8b"), 1)
    assert model.layer_ops.count("layernorm") == 2 and "qk_norm" in model.layer_ops
    shape = StepShape()
    shape.add_decode(200)  # the KV length it attends to, its own new token included
    # per layer: 9 per-layer ops (8 distinct + a second layernorm) at 1 token = 9 us, attention(1 seq, kv 200) = 20 us
    # once: embedding + final norm = 2 us, lm_head(1) = 100 us, sampler(1) = 10 us; 32 layers
    assert model.step_time(shape) == pytest.approx((32 * (9 + 20) + 2 + 100 + 10) * 1e-6)
    assert model.decode_times(shape, 1)[0] == pytest.approx(model.step_time(shape))
    # a partial prefill chunk joins: vLLM v1 runs the LM head and sampler on every scheduled sequence
    # (gpu_model_runner: logits_indices = query_start_loc[1:] - 1) and discards the chunk's token
    shape.add_prefill(50, 0)
    assert shape.logit_rows == 2
    # per layer: 9 ops at 51 tokens = 459 us, attention as before (the table has no prefill rows) = 20 us;
    # once: embedding + final norm at 51 tokens = 102 us, lm_head(2) = 110 us, sampler(2) = 10 us
    assert model.step_time(shape) == pytest.approx((32 * (459 + 20) + 102 + 110 + 10) * 1e-6)


def test_bundle_at_tp2_adds_measured_collectives(tmp_path):
    """TP > 1: per-shard operator times plus vLLM's collectives, timed from the hardware.yaml NCCL samples:
    two all-reduces a layer and one after the embedding (hidden states), one all-gather of the logits."""
    from pathlib import Path

    from sim.serving.collectives import RingCollectives, TensorParallelComm
    from sim.serving.llmservingsim_compute import LLMServingSimCompute
    from sim.serving.measured_collectives import MeasuredCollectives, bundle_hardware_yaml

    hardware, bundle = Path(tmp_path), Path(tmp_path) / "org" / "model" / "bf16"
    (bundle / "tp2").mkdir(parents=True)
    (hardware / "hardware.yaml").write_text(
        "measured:\n  interconnect:\n    samples:\n"
        "    - {collective: all_reduce, bytes: 0, us: 10}\n"
        "    - {collective: all_reduce, bytes: 1048576, us: 110}\n"
        "    - {collective: all_gather, bytes: 0, us: 20}\n"
        "    - {collective: all_gather, bytes: 1048576, us: 30}\n")
    (bundle / "meta.yaml").write_text("tp_degrees: [2]\n")
    ops = ["embedding", "final_layernorm", "layernorm", "qkv_proj", "o_proj", "gate_up_proj", "act_fn", "down_proj"]
    (bundle / "tp2" / "dense.csv").write_text("layer,tokens,time_us\n" + "".join(f"{op},1,1\n{op},1000,1\n" for op in ops))
    (bundle / "tp2" / "per_sequence.csv").write_text("layer,sequences,time_us\nlm_head,1,0\nlm_head,2,0\nsampler,1,0\nsampler,2,0\n")
    (bundle / "tp2" / "attention.csv").write_text("prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n"
                                                 "128,0,0,0,5\n256,0,0,0,5\n0,0,1,16,5\n0,0,1,32,5\n")
    model = LLMServingSimCompute.load(bundle, model_spec("llama-3-8b"), 2)
    measured = MeasuredCollectives.load(bundle_hardware_yaml(bundle), RingCollectives(1e9, 0.0))
    model.comm = TensorParallelComm(measured, 2, 32, 4096 * 2, 128256 * 2)
    shape = StepShape()
    shape.add_prefill(128, 0)
    allreduce = 10 + 100 * (128 * 4096 * 2) / 1048576  # us: 1 MiB of bf16 hidden states -> 110 us
    # us: one sequence's bf16 logits, gathered from two ranks' halves (the samples' bytes are one rank's input:
    # LLMServingSim's profiler/core/hardware.py, "AllGather local input")
    allgather = 20 + 10 * (128256 * 2 / 2) / 1048576
    per_layer = 7 * 1 + 5  # 6 per-layer ops (the dense MLP's 3 among them) + second layernorm, attention
    expected = 32 * per_layer + 2 + (2 * 32 + 1) * allreduce + allgather
    assert model.step_time(shape) == pytest.approx(expected * 1e-6)


# Vidur's phi-2 mlp.csv times these operators (github.com/microsoft/vidur data/profiling/compute/*/microsoft/phi-2):
# a plain MLP (mlp_up_proj is fc1, no gate) and a parallel block (no post_attention_layernorm).
PHI_2_OPS = ("emb", "input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj", "mlp_up_proj", "mlp_act",
             "mlp_down_proj", "add")


def _write_vidur_mlp(folder, shape: dict, medians: dict[int, list[float]]) -> None:
    """A Vidur mlp.csv at TP 1: per token count, each operator's median (ms); the mean column differs (unused)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{**{f"time_stats.{op}.{stat}": value * (2 if stat == "mean" else 1) for op, value in zip(PHI_2_OPS, ms)
                for stat in ("mean", "median")},
             **shape, "num_tokens": tokens, "num_tensor_parallel_workers": 1} for tokens, ms in medians.items()]
    pd.DataFrame(rows).to_csv(folder / "mlp.csv", index=False)


PHI_2_SHAPE = {"n_head": 32, "n_kv_head": 32, "n_embd": 2560, "n_expanded_embd": 10240, "vocab_size": 51200,
               "use_gated_mlp": False}


def test_vidur_plain_mlp_profile_prices_phi_2_by_hand(tmp_path):
    # per layer at 1 token: 0.01 + 0.05 + 0.01 + 0.02 + 0.03 + 0.01 + 0.03 + 0.01 = 0.17 ms (emb 5 ms: once a step,
    # left out); at 101 tokens twice each: 0.34 ms
    one = [5.0, 0.01, 0.05, 0.01, 0.02, 0.03, 0.01, 0.03, 0.01]
    _write_vidur_mlp(tmp_path / "p", PHI_2_SHAPE, {1: one, 101: [2 * v for v in one]})
    config = load_config(None, sets=["compute.backend=profiled", f"compute.profile={tmp_path / 'p'}",
                                     "model=microsoft/phi-2", "hardware.gpu=h100-sxm"])
    model = gpu_compute_model(config)  # the table's prices, at the step's own tokens (not its CUDA graph's 56)
    assert model.name == "profiled" and not model.roofline.model.gated_mlp
    step = StepShape()
    step.add_decode(100)
    attention = model.roofline.attention_layer_time(step)  # no attention.csv: the roofline's
    assert model.step_time(step) == pytest.approx(32 * (0.17e-3 + attention) + model.roofline.lm_head_time(1), rel=1e-9)
    # 51 decodes: halfway between the rows, 0.255 ms a layer
    kv = np.full(51, 100)
    batch = StepShape.decode_batch(kv)
    assert model.step_time(batch) == pytest.approx(
        32 * (0.255e-3 + model.roofline.attention_layer_time(batch)) + model.roofline.lm_head_time(51), rel=1e-9)
    # the table says how the MLP is built: a gated table does not price phi-2, nor the plain one a gated model
    _write_vidur_mlp(tmp_path / "g", {**PHI_2_SHAPE, "use_gated_mlp": True}, {1: one, 101: one})
    with pytest.raises(ConfigError, match="use_gated_mlp=True does not match model phi-2"):
        VidurProfile.load(tmp_path / "g" / "mlp.csv", model_spec("phi-2"), 1)
    gated = dataclasses.replace(model_spec("phi-2"), gated_mlp=True)
    with pytest.raises(ConfigError, match="use_gated_mlp=False"):
        VidurProfile.load(tmp_path / "p" / "mlp.csv", gated, 1)


@pytest.mark.parametrize("step_tokens, noted", [(202, False), (203, True)])
def test_a_vidur_table_far_below_the_runs_steps_is_noted(tmp_path, caplog, step_tokens, noted):
    """Steps past twice the table's largest token count (101: 202) are extrapolated from its top two points: one
    note names the file, its largest count and the run's (a table of 1-4 tokens priced 2,048-token prefills unsaid)."""
    one = [5.0, 0.01, 0.05, 0.01, 0.02, 0.03, 0.01, 0.03, 0.01]
    folder = tmp_path / f"p{step_tokens}"
    _write_vidur_mlp(folder, PHI_2_SHAPE, {1: one, 101: [2 * v for v in one]})
    config = load_config(None, sets=["compute.backend=profiled", f"compute.profile={folder}", "model=microsoft/phi-2",
                                     "hardware.gpu=h100-sxm", f"serving.max_num_batched_tokens={step_tokens}"])
    with caplog.at_level("WARNING", logger="kvsim.profile"):
        gpu_compute_model(config)
    told = [r.getMessage() for r in caplog.records]
    assert told == ([f"kvsim: note: {folder / 'mlp.csv'}: profiled up to 101 tokens at tensor parallel size 1; this "
                     f"run's steps reach {step_tokens} (serving.max_num_batched_tokens), priced by extrapolating its two "
                     "largest points linearly"] if noted else [])


def test_vidur_qwen_1_table_is_the_per_projection_width(tmp_path):
    # Vidur's Qwen-72B mlp.csv: n_expanded_embd 24576, QWenMLP's w1/w2 width (config.json intermediate_size 49152 / 2)
    shape = {"n_head": 64, "n_kv_head": 64, "n_embd": 8192, "vocab_size": 152064, "use_gated_mlp": True}
    one = [1.0] * len(PHI_2_OPS)
    _write_vidur_mlp(tmp_path / "q", {**shape, "n_expanded_embd": 24576}, {1: one, 9: one})
    assert VidurProfile.load(tmp_path / "q" / "mlp.csv", model_spec("qwen-72b"), 1).layer_time(5) == \
        pytest.approx(8e-3)  # eight operators of 1 ms (emb aside)
    _write_vidur_mlp(tmp_path / "f", {**shape, "n_expanded_embd": 49152}, {1: one, 9: one})
    with pytest.raises(ConfigError, match="n_expanded_embd=49152"):
        VidurProfile.load(tmp_path / "f" / "mlp.csv", model_spec("qwen-72b"), 1)


def _hand_bundle(root, dense_extra: str = "", attention: str | None = None, drop: str = ""):
    """The newer-layout bundle above (every operator 1 us a token from 1 to 101 tokens), with extra dense.csv rows
    (``drop``: an operator left out)."""
    from pathlib import Path

    from sim.serving.llmservingsim_compute import LLMServingSimCompute

    tp = Path(root) / "tp1"
    tp.mkdir(parents=True)
    (Path(root) / "meta.yaml").write_text("tp_degrees: [1]\n")
    ops = [op for op in ("embedding", "final_layernorm", "layernorm", "qkv_proj", "o_proj", "gate_up_proj", "act_fn",
                         "down_proj") if op != drop]
    (tp / "dense.csv").write_text("layer,tokens,time_us\n" + "".join(f"{op},1,1\n{op},101,101\n" for op in ops) + dense_extra)
    (tp / "per_sequence.csv").write_text("layer,sequences,time_us\nlm_head,1,100\nlm_head,11,100\nsampler,1,10\nsampler,11,10\n")
    (tp / "attention.csv").write_text(attention or "prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n0,0,1,100,10\n0,0,1,300,30\n")
    return LLMServingSimCompute.load(Path(root), model_spec("llama-3-8b"), 1)


def test_bundle_row_with_a_blank_time_is_not_used(tmp_path):
    """A blank time_us is a row not measured: the operator is interpolated over its other rows (51 us at 51
    tokens), never NaN carried into every step (the run then reported no latency at all)."""
    model = _hand_bundle(tmp_path / "b", dense_extra="qkv_proj,51,\n")
    assert model._op(model.dense, "qkv_proj", 51) == pytest.approx(51e-6)
    shape = StepShape()
    shape.add_decode(200)
    assert np.isfinite(model.step_time(shape))



def test_bundle_rows_not_used_are_counted_in_one_note_per_file(tmp_path, caplog):
    """Rows with a blank among the columns kvsim reads are not used, and not dropped silently: one note per table
    file says how many of its rows and why (each row under its first blank column), once however often the file is
    read. The rows used are the same: qkv_proj at 51 tokens is still interpolated from 1 and 101 (51 us)."""
    from sim.serving.profile_files import read_bundle_table

    with caplog.at_level("WARNING", logger="kvsim.profile"):
        model = _hand_bundle(tmp_path / "b", dense_extra="qkv_proj,51,\nact_fn,31,\n")
        _hand_bundle(tmp_path / "b2")  # nothing blank: no note
    assert model._op(model.dense, "qkv_proj", 51) == pytest.approx(51e-6)
    dense = tmp_path / "b" / "tp1" / "dense.csv"
    # 8 operators x 2 rows + the 2 blank ones
    assert [r.getMessage() for r in caplog.records] == [f"kvsim: note: {dense}: 2 of 18 rows not used (blank time_us: 2)"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="kvsim.profile"):
        read_bundle_table(dense.parent, "dense.csv")  # read again (a run reads its tables more than once): said once
    assert caplog.records == []
    skew = tmp_path / "b" / "tp1" / "skew.csv"
    skew.write_text("n,pc,kp,kvs,kv_big,kv_mean,t_mean_us,t_max_us,t_skew_us,alpha\n"
                    "2,0,0,128,512,320,52,56,53,0.29\n"
                    "2,0,0,256,1024,640,59,75,60,\n"   # blank alpha (t_max below t_mean: no fit)
                    "2,0,0,,1024,640,59,75,60,\n"      # blank kvs and alpha: counted under kvs, its first
                    "4,0,0,256,1024,640,59,,60,0.1\n"  # blank t_max_us
                    "4,0,0,128,512,320,52,56,53,0.5\n")
    with caplog.at_level("WARNING", logger="kvsim.profile"):
        shots = read_bundle_table(skew.parent, "skew.csv")
    assert shots["alpha"].tolist() == [0.29, 0.5]
    assert [r.getMessage() for r in caplog.records] == [
        f"kvsim: note: {skew}: 3 of 5 rows not used (blank kvs: 1, blank t_max_us: 1, blank alpha: 1)"]


def test_a_table_whose_every_row_is_blank_is_refused_naming_the_column(tmp_path):
    """A table none of whose rows can be used (a time column blank throughout) is refused naming that column: the
    rows were set aside one by one and the run then said "no rows for tensor parallel size 1", as if the file
    lacked them."""
    ops = ["input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj", "post_attention_layernorm",
           "mlp_up_proj", "mlp_act", "mlp_down_proj", "add"]
    header = "num_tokens,num_tensor_parallel_workers," + ",".join(f"time_stats.{op}.median" for op in ops)
    rows = [f"{n},1," + ",".join("" if op == "attn_rope" else "0.1" for op in ops) for n in (128, 256, 512)]
    (tmp_path / "mlp.csv").write_text("\n".join([header, *rows]) + "\n")
    with pytest.raises(ConfigError, match=r"mlp\.csv: no row can be used: column time_stats\.attn_rope\.median is "
                                          r"blank in 3 of 3 rows$"):
        VidurProfile.load(tmp_path / "mlp.csv", model_spec("llama-3-8b"), 1)


def test_bundle_rows_not_used_are_told_on_stderr_by_check_calibration(tmp_path):
    """End to end (a real stderr): --check-calibration says, per table file, the rows it did not use, one line
    each; --quiet keeps them back, as it does the trace loaders' notes."""
    import subprocess
    import sys

    ops = ["embedding", "final_layernorm", "layernorm", "qkv_proj", "o_proj", "gate_up_proj", "act_fn", "down_proj"]
    _hand_bundle(tmp_path / "b", dense_extra="".join(f"{op},51,51\n" for op in ops) + "qkv_proj,21,\nact_fn,31,\n",
                 attention="prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n"
                           "0,0,1,100,10\n0,0,1,200,20\n0,0,1,300,30\n0,0,1,400,\n")
    with open(tmp_path / "b" / "tp1" / "per_sequence.csv", "a") as table:
        table.write("lm_head,6,100\nsampler,6,10\n")
    (tmp_path / "o.yaml").write_text("model: llama-3-8b\ncompute: {backend: profiled, profile: b}\n")
    # (the overlay named relatively, as its folder: its profile's files are named so; named by its absolute path,
    # they are named absolutely)
    command = [sys.executable, str(ROOT / "main.py"), "--check-calibration", "o.yaml"]
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "kvsim: note: b/tp1/dense.csv: 2 of 26 rows not used (blank time_us: 2)",
        "kvsim: note: b/tp1/attention.csv: 1 of 4 rows not used (blank time_us: 1)"]
    quiet = subprocess.run(command + ["--quiet"], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert quiet.returncode == 0 and quiet.stderr == ""

@pytest.mark.parametrize("lacking", ["gate_up_proj", "act_fn", "down_proj"])
def test_bundle_lacking_a_dense_mlp_operator_is_refused(tmp_path, lacking):
    """A dense layer sums its MLP's three operators (LLMServingSim's catalogs: profiler/models/llama.yaml
    ``mlp_dense: [gate_up_proj, act_fn, down_proj]``); a bundle without one of them priced every layer without it
    (down_proj alone was required), so the run was silently fast. Refused, naming the file and the operator; with all
    three the layer sums them: 6 per-layer operators and a second layernorm, 1 us each at 1 token."""
    full = _hand_bundle(tmp_path / "full")
    assert sum(full._op(full.dense, op, 1) for op in full.layer_ops) == pytest.approx(7e-6)
    assert {"gate_up_proj", "act_fn", "down_proj"} <= set(full.layer_ops)
    root = tmp_path / "b"
    with pytest.raises(ConfigError, match=rf"^{root}/tp1/dense.csv: bundle lacks operator\(s\) {lacking} "
                                          r"\(of the dense MLP\)$"):
        _hand_bundle(root, drop=lacking)


def test_bundle_attention_without_pure_decode_rows_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="attention.csv: no pure-decode"):
        _hand_bundle(tmp_path / "b", attention="prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n16,0,0,0,5\n"
                                               "32,0,0,0,5\n")


def test_vidur_row_without_an_operator_time_is_not_used(tmp_path):
    """A row missing one operator's median prices the layer without that operator if summed as read; it is left
    out, so 51 tokens lie halfway between the 1- and 101-token rows (0.255 ms, as in the phi-2 case above)."""
    one = [5.0, 0.01, 0.05, 0.01, 0.02, 0.03, 0.01, 0.03, 0.01]
    partial = [5.0, 0.01, 0.05, 0.01, 0.02, 0.03, float("nan"), 0.03, 0.01]  # mlp_up_proj not measured
    _write_vidur_mlp(tmp_path / "p", PHI_2_SHAPE, {1: one, 51: partial, 101: [2 * v for v in one]})
    profile = VidurProfile.load(tmp_path / "p" / "mlp.csv", model_spec("phi-2"), 1)
    assert profile.tokens.tolist() == [1, 101]
    assert profile.layer_time(51) == pytest.approx(0.255e-3)


def test_measured_tables_never_extrapolate_a_negative_time():
    """Beyond the largest measured size a table extends its top segment; a falling one stops at 0 s."""
    from sim.serving.profile_grid import GridNode, interpolate

    x, y = np.array([1.0, 2.0]), np.array([2.0, 1.0])
    assert interpolate(x, y, 1.5) == 1.5 and interpolate(x, y, 3.0) == 0.0 and interpolate(x, y, 10.0) == 0.0
    grid = GridNode(pd.DataFrame({"a": [1, 1, 2, 2], "b": [1, 2, 1, 2], "t": [2.0, 2.0, 1.0, 1.0]}), ["a", "b"], "t")
    assert grid.lookup((1.5, 1.0)) == 1.5 and grid.lookup((5.0, 1.0)) == 0.0


def test_vidur_header_with_spaces_after_commas_loads_as_the_clean_one(tmp_path):
    """``a, b, c``: a hand-edited or spreadsheet-exported header, read as pandas' skipinitialspace reads it (the
    names stripped), to the same table and the same per-layer times as the clean file."""
    from sim.serving.profile_files import read_profile_csv

    one = [5.0, 0.01, 0.05, 0.01, 0.02, 0.03, 0.01, 0.03, 0.01]
    _write_vidur_mlp(tmp_path / "clean", PHI_2_SHAPE, {1: one, 101: [2 * v for v in one]})
    clean = (tmp_path / "clean" / "mlp.csv").read_text().splitlines()
    (tmp_path / "spaced").mkdir()
    (tmp_path / "spaced" / "mlp.csv").write_text("\n".join([clean[0].replace(",", ", ")] + clean[1:]) + "\n")
    assert ", time_stats." in (tmp_path / "spaced" / "mlp.csv").read_text()
    pd.testing.assert_frame_equal(read_profile_csv(tmp_path / "spaced" / "mlp.csv", numeric=("time_stats.*",)),
                                  read_profile_csv(tmp_path / "clean" / "mlp.csv", numeric=("time_stats.*",)))
    spaced = VidurProfile.load(tmp_path / "spaced" / "mlp.csv", model_spec("phi-2"), 1)
    assert spaced.tokens.tolist() == [1, 101]
    assert spaced.seconds == pytest.approx([0.17e-3, 0.34e-3])  # the hand sums of the test above


def test_profile_time_beyond_an_hour_is_refused(tmp_path):
    """A finite but absurd operator time (1e30 ms) would dominate every step: refused, naming file, row, column."""
    from sim.serving.llmservingsim_compute import LLMServingSimCompute

    one = [5.0, 0.01, 0.05, 0.01, 0.02, 0.03, 0.01, 0.03, 0.01]
    absurd = one[:5] + [1e30] + one[6:]  # mlp_up_proj
    _write_vidur_mlp(tmp_path / "v", PHI_2_SHAPE, {1: one, 101: absurd})
    with pytest.raises(ConfigError, match=r"mlp\.csv \(Vidur mlp\.csv\): row 2 column time_stats\.mlp_up_proj\.mean: "
                                          r"longer than an hour"):
        VidurProfile.load(tmp_path / "v" / "mlp.csv", model_spec("phi-2"), 1)
    # the bound itself: 3,600,000 ms is an hour and is read; a bundle's microseconds are bounded alike
    _write_vidur_mlp(tmp_path / "h", PHI_2_SHAPE, {1: one, 101: one[:5] + [3.6e6 / 2] + one[6:]})  # mean = 2 x median
    assert VidurProfile.load(tmp_path / "h" / "mlp.csv", model_spec("phi-2"), 1).seconds[1] > 1800
    bundle = tmp_path / "b" / "tp1"
    bundle.mkdir(parents=True)
    (tmp_path / "b" / "meta.yaml").write_text("tp_degrees: [1]\n")
    ops = ["embedding", "final_layernorm", "layernorm", "qkv_proj", "o_proj", "down_proj"]
    (bundle / "dense.csv").write_text("layer,tokens,time_us\n" + "".join(f"{op},1,1\n{op},101,101\n" for op in ops)
                                      + "qkv_proj,201,3600000001\n")
    (bundle / "per_sequence.csv").write_text("layer,sequences,time_us\nlm_head,1,1\nlm_head,9,1\nsampler,1,1\nsampler,9,1\n")
    (bundle / "attention.csv").write_text("prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n0,0,1,16,5\n0,0,1,32,5\n")
    with pytest.raises(ConfigError, match=r"dense\.csv \(LLMServingSim bundle\): row 13 column time_us: longer than an hour"):
        LLMServingSimCompute.load(tmp_path / "b", model_spec("llama-3-8b"), 1)


def test_vidur_rows_without_times_are_set_aside_and_counted(tmp_path, caplog):
    """Vidur tables: an attention.csv row with no time at all (a row times only its own kind's operators, so a
    blank in the other kind's column is normal) and an mlp.csv row lacking one of the layer's operator times are not
    used, and each file says how many. Before, the blank attention row went into the grid as NaN and broke lookups
    around it (a batch of 4 read NaN, a batch of 2 read 0); the lookups are now the bilinear values by hand."""
    from sim.serving.vidur_compute import VidurAttention, VidurProfile

    shape = "4096,32,8,1"
    attention = tmp_path / "attention.csv"
    rows = [f"{shape},{b},0,{kv},False,,{0.01 * b + kv * 1e-5}" for b in (1, 8) for kv in (100, 1000)]
    rows.append(f"{shape},4,0,500,False,,")  # no time
    rows += [f"{shape},1,{c},{kv},True,{c * 1e-4 + kv * 1e-5}," for c in (64, 512) for kv in (0, 1000)]
    attention.write_text("n_embd,n_q_head,n_kv_head,num_tensor_parallel_workers,batch_size,prefill_chunk_size,"
                         "kv_cache_size,is_prefill,time_stats.attn_prefill.median,time_stats.attn_decode.median\n"
                         + "\n".join(rows) + "\n")
    ops = ["input_layernorm", "attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_act", "mlp_down_proj"]
    mlp = tmp_path / "mlp.csv"
    mlp.write_text("n_embd,n_head,n_kv_head,n_expanded_embd,use_gated_mlp,num_tensor_parallel_workers,num_tokens,"
                   + ",".join(f"time_stats.{op}.median" for op in ops) + "\n"
                   + "".join(f"4096,32,8,14336,True,1,{t},{','.join([str(t / 6000)] * 6)}\n" for t in (1, 101))
                   + "4096,32,8,14336,True,1,51,0.5,0.5,,0.5,0.5,0.5\n")  # lacks attn_post_proj: not used
    model = model_spec("llama-3-8b")
    with caplog.at_level("WARNING", logger="kvsim.profile"):
        att = VidurAttention.load(attention, model, 1, 16)
        layer = VidurProfile.load(mlp, model, 1)
    assert att.decode_time(4, 501) == pytest.approx((0.04 + 0.005) * 1e-3)  # batch 4, 500 cached keys
    assert att.decode_time(2, 301) == pytest.approx((0.02 + 0.003) * 1e-3)
    assert layer.layer_time(51) == pytest.approx(51 / 1000 * 1e-3)  # interpolated from 1 and 101, not the 3 ms row
    assert [r.getMessage() for r in caplog.records] == [
        f"kvsim: note: {attention}: 1 of 9 rows not used (every one of 2 time columns blank: 1)",
        f"kvsim: note: {mlp}: 1 of 3 rows not used (blank time_stats.attn_post_proj.median: 1)"]
