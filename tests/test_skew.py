"""LLMServingSim's skew correction (skew_fit.csv) on hand-made batches, against the bundle's own fitted values."""

from __future__ import annotations

import functools
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.config import load_config
from sim.errors import ConfigError
from sim.serving.compute import StepShape
from sim.serving.compute_backend import compute_model
from sim.serving.llmservingsim_compute import LLMServingSimCompute
from sim.specs import model_spec

BUNDLE = "profiles/llmservingsim_rtx4090_llama31_8b"


@functools.lru_cache(maxsize=None)
def _bundle(shared_data, skew: str) -> LLMServingSimCompute:
    """The shared RTX 4090 bundle's compute model (loaded once per mode; tests only read it)."""
    return compute_model(load_config(None, sets=["model=llama-3.1-8b", "hardware.gpu=rtx4090", "compute.backend=profiled",
                                                 f"compute.profile={shared_data / BUNDLE}",
                                                 f"compute.skew_correction={skew}"]))


def _fitted(shared_data, pc, n, sr, kvb, kp) -> float:
    table = pd.read_csv(shared_data / BUNDLE / "tp1" / "skew_fit.csv")
    row = table[(table["pc"] == pc) & (table["n_label"] == n) & (table["skew_rate_label"] == sr)
                & (table["kv_big_label"] == kvb) & (table["kp_label"] == kp)]
    assert len(row) == 1
    return float(row["alpha"].iloc[0])


def _decode_attention_us(shared_data, n: int, kv: float) -> float:
    """The uniform-batch attention time, by hand: linear between the two measured KV lengths at this decode count."""
    attn = pd.read_csv(shared_data / BUNDLE / "tp1" / "attention.csv")
    rows = attn[(attn["prefill_chunk"] == 0) & (attn["n_decode"] == n)].sort_values("kv_decode")
    return float(np.interp(kv, rows["kv_decode"], rows["time_us"]))


def test_decode_batch_skew_matches_the_bundles_fitted_alpha(shared_data):
    """32 decodes, 24 at KV 512 and 8 at KV 2048: mean 896, skew rate (896-512)/(2048-512) = 0.25 (sr<=40%),
    longest 2048 (kvB<=4k), no prefill (pc=0, kp=0). The bundle's row for that bucket gives alpha."""
    kv = np.array([512] * 24 + [2048] * 8)
    shape = StepShape.decode_batch(kv)
    assert shape.decode_kv_tokens / shape.decode_seqs == 896
    alpha = _fitted(shared_data, 0, "n<=32", "sr<=40%", "kvB<=4k", "kp=0")
    t_mean, t_max = _decode_attention_us(shared_data, 32, 896), _decode_attention_us(shared_data, 32, 2048)
    on, off = _bundle(shared_data, "always"), _bundle(shared_data, "never")
    assert on.skew is not None and off.skew is None
    assert on.attention_time(shape) * 1e6 == pytest.approx(t_mean + alpha * (t_max - t_mean), rel=1e-9)
    assert off.attention_time(shape) * 1e6 == pytest.approx(t_mean, rel=1e-9)
    layers = model_spec("llama-3.1-8b").num_layers
    assert on.step_time(shape) - off.step_time(shape) == pytest.approx(layers * alpha * (t_max - t_mean) * 1e-6, rel=1e-9)
    # equal lengths need no correction
    uniform = StepShape.decode_batch(np.full(32, 896))
    assert on.step_time(uniform) == off.step_time(uniform)


def test_mixed_batch_buckets(shared_data):
    fit = _bundle(shared_data, "always").skew
    # a prefill chunk of 256 tokens over 1,000 cached ones (kp<=1k) beside the decodes above
    at_grid = _fitted(shared_data, 256, "n<=32", "sr<=40%", "kvB<=4k", "kp<=1k")
    assert fit.alpha(256, 32, 0.25, 2048, 1000) == pytest.approx(at_grid)
    assert at_grid != pytest.approx(fit.default)
    # a chunk size between the profiled ones (256, 512) is in no fitted bucket: the pooled default
    assert fit.alpha(384, 32, 0.25, 2048, 1000) == pytest.approx(fit.default)


def test_outside_the_fitted_buckets_the_pooled_default(shared_data):
    """More decodes than profiled (n > 256) or a longer KV than profiled (> 16k): the pooled weighted-LS alpha
    of all skew.csv shots, as LLMServingSim's fitter defines alpha_default (the RTX 4090 meta.yaml omits it)."""
    shots = pd.read_csv(shared_data / BUNDLE / "tp1" / "skew.csv").dropna(subset=["alpha"])
    gap, excess = shots["t_max_us"] - shots["t_mean_us"], shots["t_skew_us"] - shots["t_mean_us"]
    pooled = float((gap * excess).sum() / (gap * gap).sum())
    fit = _bundle(shared_data, "always").skew
    assert fit.default == pytest.approx(pooled)
    assert fit.alpha(0, 300, 0.25, 2048, 0) == pytest.approx(pooled)
    assert fit.alpha(0, 32, 0.25, 20000, 0) == pytest.approx(pooled)


def test_auto_follows_the_bundles_meta(shared_data, tmp_path):
    """auto = as LLMServingSim reads a bundle: the shared RTX 4090 bundle's meta.yaml says skew_fit.enabled: false."""
    assert _bundle(shared_data, "auto").skew is None
    # a bundle whose meta enables the fit, with its axes, default and table inlined (older layout)
    tp = Path(tmp_path) / "tp1"
    tp.mkdir()
    source = shared_data / BUNDLE / "tp1"
    for name in ("dense.csv", "per_sequence.csv", "attention.csv"):
        (tp / name).write_text((source / name).read_text())
    (Path(tmp_path) / "meta.yaml").write_text(
        "tp_degrees: [1]\nskew_fit:\n  enabled: true\n  bucket_axes:\n"
        "    n_bins: [0, 16, 64, 1000000]\n    n_labels: [n<=16, n<=64, n>64]\n"
        "    skew_rate_bins: [-0.01, 0.5, 1.01]\n    skew_rate_labels: [sr<=50%, sr>50%]\n"
        "    kv_big_bins: [0, 4096, 1000000000]\n    kv_big_labels: [kvB<=4k, kvB>4k]\n"
        "    kp_bins: [-1, 0, 1000000000]\n    kp_labels: [kp=0, kp>0]\n"
        "  per_tp:\n    1:\n      alpha_default: 0.5\n"
        "      alpha_by_bucket: {'pc=0|n<=64|sr<=50%|kvB<=4k|kp=0': 0.25}\n")
    model = LLMServingSimCompute.load(Path(tmp_path), model_spec("llama-3.1-8b"), 1)
    assert model.skew is not None
    assert model.skew.alpha(0, 32, 0.25, 2048, 0) == 0.25  # the inlined bucket
    assert model.skew.alpha(0, 100, 0.25, 2048, 0) == 0.5  # n>64: not fitted, the meta's default


def test_decode_window_equals_single_steps_with_skew(shared_data):
    """The decode-window path gets the same correction: the longest and shortest KV grow by one a step."""
    model = _bundle(shared_data, "always")
    kv = np.array([100, 300, 300, 2500, 700, 64])
    window = model.decode_times(StepShape.decode_batch(kv), 6)
    single = [model.step_time(StepShape.decode_batch(kv + k)) for k in range(6)]
    np.testing.assert_allclose(window, single, rtol=1e-12)
    assert window[0] > _bundle(shared_data, "never").decode_times(StepShape.decode_batch(kv), 1)[0]


def _bundle_with_alphas(shared_data, folder: Path, alpha: str) -> LLMServingSimCompute:
    """The shared bundle with every skew_fit.csv alpha set to ``alpha``, loaded with the fit in force."""
    shutil.copytree(shared_data / BUNDLE, folder)
    fit = pd.read_csv(folder / "tp1" / "skew_fit.csv", dtype=str)
    fit.assign(alpha=alpha).to_csv(folder / "tp1" / "skew_fit.csv", index=False)
    return LLMServingSimCompute.load(folder, model_spec("llama-3.1-8b"), 1, skew_correction="always")


def test_a_negative_corrected_attention_time_is_floored_at_1_ns_as_llmservingsim(shared_data, tmp_path):
    """LLMServingSim's _lookup_attention_with_skew returns max(1 ns, t_mean + alpha (t_max - t_mean)): an alpha of
    -1e6 on the hand-made batch (32 decodes, 24 at KV 512 and 8 at 2048) gives 1 ns of attention a layer, not the
    negative time that scheduled a step in the past (an internal error mid-run)."""
    model = _bundle_with_alphas(shared_data, tmp_path / "b", "-1e6")
    kv = np.array([512] * 24 + [2048] * 8)
    t_mean, t_max = _decode_attention_us(shared_data, 32, 896), _decode_attention_us(shared_data, 32, 2048)
    assert t_mean - 1e6 * (t_max - t_mean) < 0  # unfloored: negative
    assert model.attention_time(StepShape.decode_batch(kv)) == 1e-9
    off = _bundle(shared_data, "never")
    layers = model_spec("llama-3.1-8b").num_layers
    shape = StepShape.decode_batch(kv)
    assert model.step_time(shape) == pytest.approx(off.step_time(shape) - layers * (t_mean * 1e-6 - 1e-9), rel=1e-9)
    # the decode-window path floors each of its steps the same
    window = model.decode_times(shape, 4)
    np.testing.assert_allclose(window, [model.step_time(StepShape.decode_batch(kv + k)) for k in range(4)], rtol=1e-12)


def test_an_alpha_that_moves_a_step_past_34_years_is_refused_naming_its_row(shared_data, tmp_path):
    """1e300 x the bundle's largest attention time (36.5 ms) is ~3.7e298 s a layer, far past the 2^30 s any span
    kvsim simulates: refused at load, naming the file and its first row. The bundled fit (alphas -2.59..4.98) loads."""
    with pytest.raises(ConfigError, match=r"skew_fit\.csv: row 1: alpha 1e\+300 .*34 years"):
        _bundle_with_alphas(shared_data, tmp_path / "big", "1e300")
    largest = pd.read_csv(shared_data / BUNDLE / "tp1" / "attention.csv")["time_us"].max() * 1e-6
    edge = 2**30 / largest  # the largest alpha allowed, by hand
    assert _bundle_with_alphas(shared_data, tmp_path / "edge", f"{edge * 0.999:.6g}").skew is not None
    with pytest.raises(ConfigError, match="row 1"):
        _bundle_with_alphas(shared_data, tmp_path / "past", f"{-edge * 1.001:.6g}")
    assert _bundle(shared_data, "always").skew is not None
    # an older bundle's inlined table is named by its entry, its default by its kernel
    inlined = tmp_path / "inlined"
    shutil.copytree(shared_data / BUNDLE, inlined)
    (inlined / "tp1" / "skew_fit.csv").unlink()
    meta = (inlined / "meta.yaml").read_text().replace("skew_fit:\n  enabled: false\n", "")
    for entry, words in (("alpha_by_bucket: {'pc=0|n<=64|sr<=50%|kvB<=4k|kp=0': -1e300}",
                          "alpha_by_bucket entry attention|pc=0|n<=64|sr<=50%|kvB<=4k|kp=0: alpha -1e+300"),
                         ("alpha_by_bucket: {'pc=0|n<=64|sr<=50%|kvB<=4k|kp=0': 0.25}\n      alpha_default: 1e300",
                          "'attention' kernel's default alpha 1e+300")):
        (inlined / "meta.yaml").write_text(meta + f"skew_fit:\n  enabled: true\n  per_tp:\n    1:\n      {entry}\n")
        with pytest.raises(ConfigError, match=re.escape(words)):
            LLMServingSimCompute.load(inlined, model_spec("llama-3.1-8b"), 1)


def test_skew_correction_knob_refused_where_it_does_nothing(tmp_path):
    with pytest.raises(ConfigError, match="LLMServingSim bundles only"):
        compute_model(load_config(None, sets=["compute.skew_correction=always"]))
    with pytest.raises(ConfigError, match="skew_fit"):
        tp = Path(tmp_path) / "tp1"
        tp.mkdir()
        (Path(tmp_path) / "meta.yaml").write_text("tp_degrees: [1]\n")
        for name, text in (("dense.csv", "layer,tokens,time_us\n" + "".join(
                f"{op},1,1\n{op},2,2\n" for op in ("embedding", "final_layernorm", "layernorm", "qkv_proj",
                                                   "o_proj", "gate_up_proj", "act_fn", "down_proj"))),
                           ("per_sequence.csv", "layer,sequences,time_us\nlm_head,1,1\nlm_head,2,1\nsampler,1,1\nsampler,2,1\n"),
                           ("attention.csv", "prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n0,0,1,16,5\n"
                                             "0,0,1,32,5\n")):
            (tp / name).write_text(text)
        LLMServingSimCompute.load(Path(tmp_path), model_spec("llama-3.1-8b"), 1, "always")


def _minimal_bundle(root: Path, meta: str, skew_fit: str | None) -> Path:
    """A dense bundle kvsim can price (every operator 1 us, attention 5 us), with ``meta`` and a ``skew_fit.csv``."""
    tp = root / "tp1"
    tp.mkdir(parents=True)
    (root / "meta.yaml").write_text(meta)
    ops = ("embedding", "final_layernorm", "layernorm", "qkv_proj", "o_proj", "gate_up_proj", "act_fn", "down_proj")
    (tp / "dense.csv").write_text("layer,tokens,time_us\n" + "".join(f"{op},1,1\n{op},2,2\n" for op in ops))
    (tp / "per_sequence.csv").write_text("layer,sequences,time_us\nlm_head,1,1\nlm_head,2,1\nsampler,1,1\nsampler,2,1\n")
    (tp / "attention.csv").write_text("prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n0,0,1,16,5\n0,0,1,32,5\n")
    if skew_fit is not None:
        (tp / "skew_fit.csv").write_text(skew_fit)
    return root


# LLMServingSim's newer fit (profiler/core/skew_calibration.py, SCHEMA "runtime-skew-calibration-v1"; its
# docs/docs/profiler/skew-alpha-fit.md "Storage": the skew_fit.csv header and meta.yaml skew_fit.per_tp[tp].schema)
NEWER_FIT = ("layer,decode_q_len,pc_label,lev_label,n_anchor,alpha,direct_rows,pooled_rows\n"
             "attention,1,pc0,lev1,4,0.5,24,30\nattention,1,pc0,lev1,16,0.8,20,25\n"
             "attention,2,pc0,lev1,4,0.9,20,20\n")  # (a two-query slice: speculative verification, not kvsim's)
NEWER_ENTRY = ("      schema: runtime-skew-calibration-v1\n      bucket_table: tp1/skew_fit.csv\n"
               "      axes: {pc_bins: [-1, 1, 8, 1000000000], pc_labels: [pc0, pc1, pc2],\n"
               "             lev_bins: [0.0, 0.25, 0.75, 1.5, 3.0, 1000000000.0], lev_labels: [lev0, lev1, lev2, lev3, lev4]}\n"
               "      alpha_clip: [-0.2, 1.0]\n      min_rows: 20\n"
               "      alpha_default_by_kernel: {'attention|q=1': 0.3, 'attention|q=2': 0.1}\n"
               "      n_range_by_kernel: {'attention|q=1': [2, 16], 'attention|q=2': [2, 8]}\n")
NEWER_META = "tp_degrees: [1]\nskew_fit:\n  enabled: true\n  per_tp:\n    1:\n" + NEWER_ENTRY
# attention KV / 16 us at any decode count
LINEAR_ATTENTION = ("prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n"
                    "0,0,1,16,1\n0,0,1,1040,65\n0,0,8,16,1\n0,0,8,1040,65\n")


def test_a_runtime_skew_calibration_v1_fit_picks_its_cells_as_llmservingsim(tmp_path):
    """LLMServingSim's newer fit (profiler/core/skew_calibration.py ``lookup``): alpha by (decode count, prefill
    tokens, lev = (M - m) / m), the anchor nearest n on a log scale (a tie: the smaller), the kernel's fallback outside
    its measured n range or a cell without anchors, no correction for a kernel without a fit. By hand."""
    import hashlib

    root = _minimal_bundle(tmp_path / "a", NEWER_META, NEWER_FIT)
    (root / "tp1" / "attention.csv").write_text(LINEAR_ATTENTION)
    digests = {name: hashlib.sha256((root / "tp1" / name).read_bytes()).hexdigest()
               for name in ("skew_fit.csv", "attention.csv")}  # the files the fit was made from: taken
    (root / "meta.yaml").write_text(NEWER_META + f"      bucket_table_sha256: {digests['skew_fit.csv']}\n"
                                    f"      reference: {{attention_sha256: {digests['attention.csv']}}}\n")
    llama = model_spec("llama-3.1-8b")
    model = LLMServingSimCompute.load(root, llama, 1)
    fit = model.skew
    lev1 = 0.5  # in (0.25, 0.75]
    assert [fit.alpha(0, n, 0, 0, 0, "attention", lev1) for n in (2, 4, 8, 9, 16)] == [0.5, 0.5, 0.5, 0.8, 0.8]
    assert fit.alpha(0, 17, 0, 0, 0, "attention", lev1) == 0.3  # beyond the measured n: the fallback
    assert fit.alpha(0, 8, 0, 0, 0, "attention", 0.25) == 0.3  # lev0: no cell
    assert fit.alpha(5, 8, 0, 0, 0, "attention", lev1) == 0.3  # pc1: no cell
    assert fit.alpha(0, 8, 0, 0, 0, "indexer", lev1) == 0.0  # no fit for the kernel: no correction
    # a step: KV 32, 32, 32, 48: m = 36 / 16 = 2.25 us, M = 3 us, lev 1/3 (lev1), n 4: alpha 0.5 -> 2.625 us a layer
    shape = StepShape.decode_batch([32, 32, 32, 48])
    plain = LLMServingSimCompute.load(root, llama, 1, "never")
    assert model.step_time(shape) - plain.step_time(shape) == pytest.approx(32 * 0.375e-6)
    # a decode window prices each step as that step alone (lev falls as the lengths grow: lev1 -> lev0 at step 17)
    times = model.decode_times(shape, 40)
    for step in (0, 15, 16, 17, 39):
        alone = model.step_time(StepShape.decode_batch([n + step for n in (32, 32, 32, 48)]))
        assert times[step] == pytest.approx(alone, rel=1e-12)


@pytest.mark.parametrize("entry, fit, words", [
    (NEWER_ENTRY.replace("runtime-skew-calibration-v1", "runtime-skew-calibration-v2"), NEWER_FIT,
     r"meta.yaml: skew fit schema 'runtime-skew-calibration-v2' \(skew_fit.per_tp.1.schema\), which kvsim does not "
     r"read: it reads LLMServingSim's unversioned fit .* and runtime-skew-calibration-v1"),
    (NEWER_ENTRY.replace("      min_rows: 20\n", ""), NEWER_FIT, r"skew_fit \(runtime-skew-calibration-v1\): no min_rows"),
    (NEWER_ENTRY.replace("pc_labels: [pc0, pc1, pc2]", "pc_labels: [pc0, pc1]"), NEWER_FIT,
     r"axes pc_bins / pc_labels must be increasing finite edges with one distinct label a bin"),
    (NEWER_ENTRY + "      bucket_table_sha256: '0000'\n", NEWER_FIT, r"skew_fit.csv: does not match meta.yaml's "
     r"skew_fit bucket_table_sha256 \(a stale fit"),
    (NEWER_ENTRY + "      reference: {attention_sha256: '0000'}\n", NEWER_FIT, r"attention.csv: does not match "
     r"meta.yaml's skew_fit reference.attention_sha256 \(a stale fit"),
    (NEWER_ENTRY, NEWER_FIT.replace("16,0.8,20,25", "16,1.5,20,25"), r"skew_fit.csv: row 2: anchor 16 / alpha 1.5 is "
     r"not a supported cell"),
    (NEWER_ENTRY, NEWER_FIT.replace("pc0,lev1,16", "pc9,lev1,16"), r"skew_fit.csv: row 2: kernel 'attention\|q=1' or "
     r"cell \('pc9', 'lev1'\) not in meta.yaml's fallbacks and axes"),
    (NEWER_ENTRY.replace("[2, 16]", "[1, 16]"), NEWER_FIT, r"kernel 'attention\|q=1': fallback 0.3 or measured n range"),
    # (found by fuzzing: these were a TypeError / OverflowError traceback, exit 1)
    (NEWER_ENTRY.replace("alpha_default_by_kernel: {'attention|q=1': 0.3, 'attention|q=2': 0.1}",
                         "alpha_default_by_kernel: null"), NEWER_FIT,
     r"alpha_default_by_kernel and n_range_by_kernel must be mappings of the same kernels, got None and "
     r"\['attention\|q=1', 'attention\|q=2'\]"),
    (NEWER_ENTRY.replace("n_range_by_kernel: {'attention|q=1': [2, 16], 'attention|q=2': [2, 8]}", "n_range_by_kernel: 16"),
     NEWER_FIT, r"must be mappings of the same kernels, got \['attention\|q=1', 'attention\|q=2'\] and 16"),
    (NEWER_ENTRY.replace("alpha_clip: [-0.2, 1.0]", "alpha_clip: [-0.2, 1" + "0" * 400 + "]"), NEWER_FIT,
     r"alpha_clip must be \[low, high\], got \[-0.2, 10000"),
    (NEWER_ENTRY.replace("pc_bins: [-1, 1, 8, 1000000000]", "pc_bins: [-1, 1, 8, 1" + "0" * 400 + "]"), NEWER_FIT,
     r"axes pc_bins / pc_labels must be increasing finite edges"),
    (NEWER_ENTRY.replace("{'attention|q=1': 0.3,", "{'attention|q=1': 1" + "0" * 400 + ","), NEWER_FIT,
     r"kernel 'attention\|q=1': fallback 10000.* is not a finite number"),
    # bucket_table: read outside the bundle (an absolute path, ..), the default table read for false / 0 / '', an
    # OSError traceback for a name too long for the file system
    (NEWER_ENTRY.replace("bucket_table: tp1/skew_fit.csv", "bucket_table: /etc/hostname"), NEWER_FIT,
     r"bucket_table '/etc/hostname' is outside the bundle"),
    (NEWER_ENTRY.replace("bucket_table: tp1/skew_fit.csv", "bucket_table: 0"), NEWER_FIT,
     r"bucket_table must be the path of the cells' table inside the bundle, got 0$"),
    (NEWER_ENTRY.replace("bucket_table: tp1/skew_fit.csv", "bucket_table: " + "x" * 300), NEWER_FIT,
     r"bucket_table 'xxx.*\(300 characters\): File name too long$"),
    (NEWER_ENTRY.replace("bucket_table: tp1/skew_fit.csv", "bucket_table: tp1"), NEWER_FIT,
     r"its cells' table .*tp1 \(bucket_table\) is not a file$"),
    # checked as LLMServingSim's read_table checks them: the multi-query rows too (a row of the two-query slice
    # outside its measured n range was taken unread), labels strings (a null label was read as 'None'), q at least 1
    (NEWER_ENTRY, NEWER_FIT.replace("attention,2,pc0,lev1,4,0.9", "attention,2,pc0,lev1,99,0.9"),
     r"skew_fit.csv: row 3: anchor 99 / alpha 0.9 is not a supported cell \(n in 2..8"),
    (NEWER_ENTRY, NEWER_FIT.replace("attention,2,pc0,lev1,4,0.9,20,20", "attention,2,pc0,lev1,4,0.9,5,20"),
     r"skew_fit.csv: row 3: anchor 4 / alpha 0.9 is not a supported cell .*direct_rows >= min_rows 20"),
    (NEWER_ENTRY.replace("lev_labels: [lev0, lev1,", "lev_labels: [null, lev1,"), NEWER_FIT,
     r"axes lev_bins / lev_labels must be increasing finite edges with one distinct label a bin, got .* and "
     r"\[None, 'lev1'"),
    (NEWER_ENTRY.replace("'attention|q=2'", "'attention|q=0'"), NEWER_FIT.replace("attention,2,", "attention,0,"),
     r"skew_fit.csv \(LLMServingSim skew_fit.csv \(runtime-skew-calibration-v1\)\): row 3 column decode_q_len: "
     r"below 1: '0'"),
    # a reference that is not a mapping: its checksums went unchecked, exit 0; a digest not a string: called stale
    (NEWER_ENTRY + "      reference: 'abc'\n", NEWER_FIT, r"reference must be a mapping \(attention_sha256, ...\), "
     r"got 'abc'$"),
    (NEWER_ENTRY + "      bucket_table_sha256: true\n", NEWER_FIT, r"bucket_table_sha256 must be a sha256 hex "
     r"digest, got True$"),
], ids=["other-schema", "no-min-rows", "axis-labels", "stale-table", "stale-attention", "alpha-past-clip",
        "unknown-cell", "n-range", "fallbacks-null", "n-ranges-a-number", "clip-past-float", "bin-past-float",
        "fallback-past-float", "table-absolute", "table-a-number", "table-name-too-long",
        "table-a-directory", "two-query-anchor-past-range", "two-query-thin-cell", "null-label", "zero-query",
        "reference-not-a-mapping", "digest-not-a-string"])
def test_a_malformed_runtime_skew_fit_is_refused_by_name(tmp_path, entry, fit, words):
    root = _minimal_bundle(tmp_path / "a", "tp_degrees: [1]\nskew_fit:\n  enabled: true\n  per_tp:\n    1:\n" + entry,
                           fit)
    with pytest.raises(ConfigError, match=words):
        LLMServingSimCompute.load(root, model_spec("llama-3.1-8b"), 1)


def test_a_runtime_skew_fit_alpha_past_34_years_is_refused_within_a_clip_as_wide(tmp_path):
    """The newer fit's alphas lie in its alpha_clip, which meta.yaml may make [-1e300, 1e300]: a cell's 1e300 times
    the grid's largest time (65 us) is past 2^30 s, refused naming the cell; so is such a fallback. 1e13 (6.5e8 s)
    loads: the bound is the span kvsim simulates, not a judgement of the fit."""
    wide = NEWER_META.replace("alpha_clip: [-0.2, 1.0]", "alpha_clip: [-1.0e+300, 1.0e+300]")
    for fit, meta, words in ((NEWER_FIT.replace(",16,0.8,", ",16,1e300,"), wide, "cell attention|pc0|lev1 n_anchor 16"),
                             (NEWER_FIT, wide.replace("'attention|q=1': 0.3", "'attention|q=1': -1.0e+300"),
                              "'attention' kernel's fallback alpha (meta.yaml alpha_default_by_kernel) -1e+300"),
                             (NEWER_FIT.replace(",16,0.8,", ",16,1e13,"), wide, None)):
        root = _minimal_bundle(tmp_path / str(len(list(tmp_path.iterdir()))), meta, fit)
        (root / "tp1" / "attention.csv").write_text(LINEAR_ATTENTION)
        if words is None:
            assert LLMServingSimCompute.load(root, model_spec("llama-3.1-8b"), 1).skew.alpha(0, 16, 0, 0, 0, lev=0.5) == 1e13
            continue
        with pytest.raises(ConfigError, match=re.escape(words) + ".*34 years"):
            LLMServingSimCompute.load(root, model_spec("llama-3.1-8b"), 1)


def test_a_runtime_skew_fit_reads_its_cells_table_only_inside_its_bundle(tmp_path):
    """bucket_table is a path inside the bundle (LLMServingSim's fit_bundle writes tp<N>/skew_fit.csv). Before, '..'
    read another bundle's cells without a word (found by fuzzing)."""
    _minimal_bundle(tmp_path / "other", NEWER_META, NEWER_FIT.replace("0.8,20,25", "0.9,20,25"))
    root = _minimal_bundle(tmp_path / "a", NEWER_META.replace("bucket_table: tp1/skew_fit.csv",
                                                              "bucket_table: ../other/tp1/skew_fit.csv"), NEWER_FIT)
    with pytest.raises(ConfigError, match=r"^" + re.escape(
            f"{root / 'meta.yaml'}: skew_fit (runtime-skew-calibration-v1): bucket_table '../other/tp1/skew_fit.csv' "
            f"is outside the bundle {root} (")):
        LLMServingSimCompute.load(root, model_spec("llama-3.1-8b"), 1)


def test_a_newer_skew_table_without_its_meta_entry_is_refused_naming_it(tmp_path, run_cli):
    """The newer skew_fit.csv keeps its axes and fallbacks in meta.yaml: without that entry it cannot be read (it was
    refused as 'not an LLMServingSim skew_fit.csv (needs columns ...)'), and is refused naming the schema its columns
    tell; ``never`` runs without it; a whole v1 bundle runs from the command line."""
    llama = model_spec("llama-3.1-8b")
    unrecorded = _minimal_bundle(tmp_path / "b", "tp_degrees: [1]\nskew_fit: {enabled: true}\n", NEWER_FIT)
    with pytest.raises(ConfigError, match=r"^" + re.escape(
            f"{unrecorded / 'tp1' / 'skew_fit.csv'}: skew fit schema 'runtime-skew-calibration-v1' by its columns "
            "(pc_label, lev_label, n_anchor), which kvsim does not read: it reads LLMServingSim's unversioned fit")):
        LLMServingSimCompute.load(unrecorded, llama, 1)
    assert LLMServingSimCompute.load(unrecorded, llama, 1, "never").skew is None
    recorded = _minimal_bundle(tmp_path / "a", NEWER_META, NEWER_FIT)
    status, _, err = run_cli("--quiet", "--no-plot", "--workload-limit", "20", "--set", "compute.backend=profiled",
                             "--set", f"compute.profile={recorded}")
    assert status == 0, err


def test_check_calibration_says_it_does_not_evaluate_a_runtime_skew_fit(tmp_path):
    """--check-calibration reads a v1 fit (a malformed one is refused there too) and says in one note that it does not
    evaluate it (its references are attention.csv lookups, which skew.csv's measured controls are not)."""
    import subprocess
    import sys

    root = _minimal_bundle(tmp_path / "a", NEWER_META, NEWER_FIT)
    ops = ("embedding", "final_layernorm", "layernorm", "qkv_proj", "o_proj", "gate_up_proj", "act_fn", "down_proj")
    tp = root / "tp1"  # three points a curve: the check needs a point with neighbours on both sides
    (tp / "dense.csv").write_text("layer,tokens,time_us\n" + "".join(f"{op},{t},{t}\n" for op in ops for t in (1, 2, 3)))
    (tp / "per_sequence.csv").write_text("layer,sequences,time_us\n" + "".join(f"{op},{s},1\n" for op in ("lm_head", "sampler")
                                                                               for s in (1, 2, 3)))
    (tp / "attention.csv").write_text("prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n" + "".join(
        f"0,0,{n},{kv},{kv / 16}\n" for n in (1, 4, 8) for kv in (16, 528, 1040)))
    overlay = tmp_path / "o.yaml"
    overlay.write_text(f"model: llama-3.1-8b\ncompute:\n  backend: profiled\n  profile: {root}\n")
    done = subprocess.run([sys.executable, "main.py", "--check-calibration", str(overlay)], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parent.parent, check=False)
    assert done.returncode == 0, done.stderr
    assert (f"kvsim: note: {root / 'tp1' / 'skew_fit.csv'}: a runtime-skew-calibration-v1 fit, read and applied as "
            "LLMServingSim does, but not evaluated here") in done.stderr
