"""LLMServingSim bundles of models whose layers differ (DeepSeek's catalog layout): a mixture of experts' dense MLP
layers beside its MoE layers, the attention kernels each layer runs (attention, DeepSeek sparse attention's indexer)
with their own skew fits, multi-head latent attention's operators, and the refusals of bundles of another shape."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from sim.errors import ConfigError
from sim.serving.compute import StepShape
from sim.serving.llmservingsim_compute import LLMServingSimCompute
from sim.specs import model_spec
from tests.test_moe import TINY, _bundle


def test_bundle_with_dense_mlp_layers_beside_moe_layers_by_hand(tmp_path):
    """DeepSeek's first_k_dense_replace layers run a dense MLP, the rest the MoE block (LLMServingSim
    profiler/models/deepseek_v32.yaml: blocks.mlp dense [gate_up_proj, act_fn, down_proj], moe [moe]): the bundle's
    MLP operators price the dense layers only, moe.csv the others; every layer runs the rest."""
    root = _bundle(tmp_path, 1, 1)
    with open(root / "tp1" / "dense.csv", "a") as table:  # the dense MLP: 3 + 2 + 4 = 9 us at any token count
        table.write("gate_up_proj,1,3\ngate_up_proj,100,3\nact_fn,1,2\nact_fn,100,2\ndown_proj,1,4\ndown_proj,100,4\n")
    one_dense = LLMServingSimCompute.load(root, dataclasses.replace(TINY, num_moe_layers=1), 1)
    shape = StepShape.decode_batch([16, 16])
    # 2 layers of 4 operators + attention 5; layer 1 a dense MLP (9 us), layer 2 the MoE block (42.5 us, as above);
    # embedding + final norm 2
    assert one_dense.step_time(shape) == pytest.approx((2 * (4 + 5) + 9 + 42.5 + 2) * 1e-6)
    assert one_dense.decode_times(shape, 1)[0] == pytest.approx(one_dense.step_time(shape))
    # every layer MoE: the MLP operators (profiled for other layers) are not run at all
    all_moe = LLMServingSimCompute.load(root, TINY, 1)
    assert all_moe.step_time(shape) == pytest.approx((2 * (4 + 5 + 42.5) + 2) * 1e-6)


def test_bundle_attention_group_kernels_each_run_once_a_layer(tmp_path):
    """An attention.csv with several kernels (DeepSeek-V3.2: the MLA attention and its sparse-attention indexer,
    both keyed on the attention axes and run on every attention layer) prices a layer's attention as their sum;
    rows of speculative verification (decode_q_len > 1) are not used."""
    from tests.test_sparse_attention import dsa_16l64e

    root = _deepseek_catalog_bundle(tmp_path)
    (root / "tp1" / "attention.csv").write_text(_two_kernels("indexer"))
    model = LLMServingSimCompute.load(root, dsa_16l64e(), 1)
    shape = StepShape.decode_batch([24, 24])  # KV 24: the indexer 3 us (between 2 at 16 and 4 at 32)
    # 16 layers x (7 operators + attention 5 + indexer 3) + 3 dense MLP layers (9) + 13 MoE layers (40) + 2
    assert model.step_time(shape) == pytest.approx((16 * (7 + 5 + 3) + 3 * 9 + 13 * 40 + 2) * 1e-6)
    assert model.decode_times(shape, 1)[0] == pytest.approx(model.step_time(shape))


def _two_kernels(second: str | None) -> str:
    """attention.csv rows of the attention kernel (5 us) and ``second`` (KV / 8 us), and a verification row of 999."""
    return ("layer,prefill_chunk,kv_prefill,n_decode,kv_decode,decode_q_len,time_us\n"
            + "".join(f"attention,0,0,{n},{kv},1,5\n" for n in (1, 8) for kv in (16, 32))
            + ("" if second is None else
               "".join(f"{second},0,0,{n},{kv},1,{kv / 8}\n" for n in (1, 8) for kv in (16, 32))
               + f"{second},0,0,1,16,2,999\n"))


def test_bundle_attention_kernels_must_be_the_models_every_layer_kernels(tmp_path):
    """A kernel is summed into every layer's attention, so the bundle's kernels must be those every layer of the model
    runs (LLMServingSim's deepseek_v32 catalog: attention and indexer on each layer; minimax_m3_vl: sparse_attention
    on some layers only): an indexer for a model without sparse attention, a kernel of another layout, or a sparse
    model's missing indexer (silently dropped before) are refused by name."""
    from tests.test_sparse_attention import dsa_16l64e

    tiny = _bundle(tmp_path / "tiny", 1, 1)
    (tiny / "tp1" / "attention.csv").write_text(_two_kernels("indexer"))
    with pytest.raises(ConfigError, match=r"attention.csv: kernel\(s\) 'indexer' \(DeepSeek sparse attention's "
                                          r"indexer, which tiny-moe does not have"):
        LLMServingSimCompute.load(tiny, TINY, 1)
    # --check-calibration applies the same check before summing the kernels' common points
    from sim.config import load_config
    from sim.serving.calibration import _bundle_tables

    config = load_config(None, sets=["model=qwen3-30b-a3b", "compute.backend=profiled", f"compute.profile={tiny}"])
    with pytest.raises(ConfigError, match=r"'indexer' \(DeepSeek sparse attention's indexer, which qwen3-30b-a3b"):
        _bundle_tables(tiny, config)
    dsa = _deepseek_catalog_bundle(tmp_path / "dsa")
    (dsa / "tp1" / "attention.csv").write_text(_two_kernels("sparse_attention"))
    with pytest.raises(ConfigError, match=r"kernel\(s\) 'sparse_attention' \(not a kernel every layer of .* runs "
                                          r"once; it runs 'attention' and 'indexer'\)"):
        LLMServingSimCompute.load(dsa, dsa_16l64e(), 1)
    (dsa / "tp1" / "attention.csv").write_text(_two_kernels(None))
    with pytest.raises(ConfigError, match=r"attention.csv: no 'indexer' kernel rows .* but every layer of "
                                          r".* runs attention and indexer"):
        LLMServingSimCompute.load(dsa, dsa_16l64e(), 1)
    # rows of speculative verification only (decode_q_len 2): no kernel left, which priced attention at 0 before
    (tiny / "tp1" / "attention.csv").write_text(_two_kernels(None).replace(",1,5\n", ",2,5\n"))
    with pytest.raises(ConfigError, match=r"attention.csv: no 'attention' kernel rows .* every layer of tiny-moe runs "
                                          r"attention"):
        LLMServingSimCompute.load(tiny, TINY, 1)


def test_each_attention_kernel_needs_its_own_two_points(tmp_path):
    """Each kernel is interpolated over its own rows: an indexer measured at one point priced every step's indexer
    at that point (the table's two-point check counted the kernels' rows together), and a query length of 0 (no
    LLMServingSim verification length: 1, or 2 and more with speculative decoding) was set aside unsaid."""
    from tests.test_sparse_attention import dsa_16l64e

    dsa = _deepseek_catalog_bundle(tmp_path)
    (dsa / "tp1" / "attention.csv").write_text(_two_kernels(None) + "indexer,0,0,1,16,1,3\n")
    with pytest.raises(ConfigError, match=r"attention.csv: too few rows in attention.csv: 1 point \(prefill_chunk, "
                                          r"prefill_key, n_decode, kv_decode\) \(attention for kernel 'indexer'\) "
                                          r"in tp1/; a run interpolates between at least 2"):
        LLMServingSimCompute.load(dsa, dsa_16l64e(), 1)
    # two points, one of them with a prefill: one pure-decode point
    (dsa / "tp1" / "attention.csv").write_text(_two_kernels(None) + "indexer,0,0,1,16,1,3\nindexer,8,0,1,16,1,3\n")
    with pytest.raises(ConfigError, match=r"1 point \(n_decode, kv_decode\) \(pure-decode \(prefill_chunk 0\) for "
                                          r"kernel 'indexer'\) in tp1/"):
        LLMServingSimCompute.load(dsa, dsa_16l64e(), 1)
    (dsa / "tp1" / "attention.csv").write_text(_two_kernels("indexer") + "indexer,0,0,1,64,0,99\n")
    with pytest.raises(ConfigError, match=r"attention.csv \(LLMServingSim bundle\): row 10 column decode_q_len: "
                                          r"below 1: '0'"):
        LLMServingSimCompute.load(dsa, dsa_16l64e(), 1)


def test_check_calibration_counts_the_kernel_points_it_cannot_sum(tmp_path):
    """--check-calibration checks a layer's attention, its kernels' sum, where every kernel was measured; a kernel's
    points the others lack are counted in the table's notes (they were dropped unsaid), and kernels sharing no point
    are refused by name (the error said no point had neighbours)."""
    from sim.config import load_config
    from sim.serving.calibration import _bundle_tables
    from tests.test_sparse_attention import FIXTURE

    root = _deepseek_catalog_bundle(tmp_path)
    config = load_config(None, sets=[f"model={FIXTURE}", "compute.backend=profiled", f"compute.profile={root}"])

    def with_indexer_at(kvs):
        (root / "tp1" / "attention.csv").write_text(
            "layer,prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n"
            + "".join(f"attention,0,0,{n},{kv},5\n" for n in (1, 8) for kv in (16, 32))
            + "".join(f"indexer,0,0,{n},{kv},2\n" for n in (1, 8) for kv in kvs))
        return {fit.table: fit for fit in _bundle_tables(root, config)}["tp1/attention.csv"]

    same = with_indexer_at((16, 32))
    assert len(same.measured) == 4 and same.measured[0] == pytest.approx(7e-6) and not same.notes
    # the indexer at KV 16 and 64: 2 of 4 points a kernel in common, 2 + 2 not
    partial = with_indexer_at((16, 64))
    assert len(partial.measured) == 2 and partial.notes == {"kernel_points_not_shared": 4}
    with pytest.raises(ConfigError, match=r"attention.csv: kernels 'attention', 'indexer' share no grid point"):
        with_indexer_at((24, 64))


def test_bundle_skew_correction_is_per_attention_kernel(tmp_path):
    """A skew fit with a kernel per row (LLMServingSim trace_generator ``_skew_alpha``: the key is
    ``{layer}|{bucket}``; outside the buckets ``alpha_default`` for the attention kernel only, 0 for another) corrects
    each kernel with its own alpha, not the sum of the kernels with whichever row came last."""
    from tests.test_sparse_attention import dsa_16l64e

    root = _deepseek_catalog_bundle(tmp_path)
    (root / "meta.yaml").write_text((root / "meta.yaml").read_text()
                                    + "skew_fit:\n  enabled: true\n  per_tp:\n    1:\n      alpha_default: 0.3\n")
    # attention KV / 4 us, indexer KV / 8 us, linear in KV at 1 and 8 decodes
    (root / "tp1" / "attention.csv").write_text(
        "layer,prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n"
        + "".join(f"{k},0,0,{n},{kv},{kv / d}\n" for k, d in (("attention", 4), ("indexer", 8))
                  for n in (1, 8) for kv in (16, 64)))
    (root / "tp1" / "skew_fit.csv").write_text(
        "layer,pc,n_label,skew_rate_label,kv_big_label,kp_label,alpha\n"
        "attention,0,n<=8,sr<=40%,kvB<=1k,kp=0,0.5\nindexer,0,n<=8,sr<=40%,kvB<=1k,kp=0,0.25\n")
    model = LLMServingSimCompute.load(root, dsa_16l64e(), 1)
    fixed = 16 * 7 + 3 * 9 + 13 * 40 + 2  # operators, dense MLPs, MoE blocks, embedding and final norm (us)
    # KV 16, 16, 16, 64: mean 28, skew rate 12 / 48 = 0.25 (sr<=40%); attention 7 -> 16 us at the longest, alpha
    # 0.5: 11.5; indexer 3.5 -> 8 us, alpha 0.25: 4.625
    shape = StepShape.decode_batch([16, 16, 16, 64])
    assert model.step_time(shape) == pytest.approx((fixed + 16 * (11.5 + 4.625)) * 1e-6)
    assert model.decode_times(shape, 1)[0] == pytest.approx(model.step_time(shape))
    # KV 16, 64, 64, 64: skew rate 0.75, in no fitted bucket: attention 13 -> 16 us at alpha_default 0.3 (13.9), the
    # indexer 6.5 us uncorrected (no default of its own)
    shape = StepShape.decode_batch([16, 64, 64, 64])
    assert model.step_time(shape) == pytest.approx((fixed + 16 * (13.9 + 6.5)) * 1e-6)
    assert model.decode_times(shape, 1)[0] == pytest.approx(model.step_time(shape))
    # a decode window prices each step as that step alone, across the kvB<=1k edge (the longest passes 1,024 KV
    # tokens at step 961: alpha_default from there) and for equal lengths (nothing to correct)
    for lengths in ([16, 16, 16, 64], [16, 64, 64, 64], [40, 40]):
        times = model.decode_times(StepShape.decode_batch(lengths), 1100)
        for step in (0, 1, 500, 959, 960, 961, 1099):
            alone = model.step_time(StepShape.decode_batch([n + step for n in lengths]))
            assert times[step] == pytest.approx(alone, rel=1e-12)
    # the same fit inlined in meta.yaml with kernel-prefixed keys
    (root / "tp1" / "skew_fit.csv").unlink()
    (root / "meta.yaml").write_text((root / "meta.yaml").read_text() + "      alpha_by_bucket:\n"
                                    "        'attention|pc=0|n<=8|sr<=40%|kvB<=1k|kp=0': 0.5\n"
                                    "        'indexer|pc=0|n<=8|sr<=40%|kvB<=1k|kp=0': 0.25\n")
    inlined = LLMServingSimCompute.load(root, dsa_16l64e(), 1)
    assert inlined.step_time(StepShape.decode_batch([16, 16, 16, 64])) == pytest.approx((fixed + 16 * 16.125) * 1e-6)



def _deepseek_catalog_bundle(root: Path) -> Path:
    """A bundle in the layout LLMServingSim's DeepSeek catalog writes (profiler/models/deepseek_v32.yaml): multi-head
    latent attention's operators (fused q_a/kv_a projection, the merged q_a/kv_a norms, the merged q_b/kv_b
    projections, rope), the dense MLP of the first_k_dense_replace layers, moe.csv for the rest, and meta.yaml's
    profiled num_key_value_heads equal to the head count (the config's; the cache holds one latent), for
    DeepSeek-V2-Lite: every operator 1 us, the dense MLP 9 us, attention 5 us, the MoE block 40 us."""
    folder = root / "tp1"
    folder.mkdir(parents=True)
    (root / "meta.yaml").write_text("tp_degrees: [1]\nengine_effective:\n  hf_overrides: {num_hidden_layers: 2, "
                                    "num_attention_heads: 16, num_key_value_heads: 16}\n")
    every = ["layernorm", "mla_qkv_a_proj", "mla_a_layernorm", "mla_b_proj", "rotary_emb", "o_proj"]  # 1 us each
    mlp = {"gate_up_proj": 3, "act_fn": 2, "down_proj": 4}  # the dense layer's MLP: 9 us
    rows = [f"{op},{t},1\n" for op in ["embedding", "final_layernorm", *every] for t in (1, 100)]
    rows += [f"{op},{t},{us}\n" for op, us in mlp.items() for t in (1, 100)]
    (folder / "dense.csv").write_text("layer,tokens,time_us\n" + "".join(rows))
    (folder / "per_sequence.csv").write_text("layer,sequences,time_us\nlm_head,1,0\nlm_head,9,0\nsampler,1,0\n"
                                             "sampler,9,0\n")
    (folder / "attention.csv").write_text("prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n"
                                          "0,0,1,16,5\n0,0,1,32,5\n0,0,8,16,5\n0,0,8,32,5\n")
    (folder / "moe.csv").write_text("tokens,activated_experts,time_us\n"
                                    + "".join(f"{t},{e},40\n" for t in (1, 100) for e in (6, 64)))
    return root


def test_deepseek_catalog_bundle_by_hand(tmp_path):
    """DeepSeek-V2-Lite (27 layers, the first dense, 26 MoE; shared experts inside the MoE block moe.csv times) from a
    bundle in LLMServingSim's DeepSeek layout, through the serving modes' compute model."""
    from sim.config import load_config
    from sim.serving.compute_backend import compute_model

    root = _deepseek_catalog_bundle(tmp_path / "b")
    config = load_config(None, sets=["model=deepseek-v2-lite", "compute.backend=profiled", f"compute.profile={root}"])
    model = compute_model(config)
    shape = StepShape.decode_batch([16, 16])
    # 27 layers x (7 operators, two norms among them, + attention 5) + 1 dense MLP layer (9) + 26 MoE layers (40)
    # + embedding and final norm (2)
    assert model.step_time(shape) == pytest.approx((27 * (7 + 5) + 9 + 26 * 40 + 2) * 1e-6)
    assert model.decode_times(shape, 1)[0] == pytest.approx(model.step_time(shape))


def test_a_bundle_of_the_other_attention_kind_is_refused(tmp_path):
    """Multi-head latent attention's operators (mla_qkv_a_proj) time another model than q/k/v/o's (qkv_proj): a
    bundle of one kind for a model of the other is refused by name."""
    with pytest.raises(ConfigError, match="the bundle times qkv_proj .* but deepseek-v2-lite has multi-head latent"):
        LLMServingSimCompute.load(_bundle(tmp_path / "qkv", 1, 1), model_spec("deepseek-v2-lite"), 1)
    mla = _deepseek_catalog_bundle(tmp_path / "mla")
    (mla / "meta.yaml").write_text("tp_degrees: [1]\n")  # (its profiled shapes would not fit Llama's either)
    (mla / "tp1" / "moe.csv").unlink()
    with pytest.raises(ConfigError, match="the bundle times mla_qkv_a_proj .* but llama-3-8b has q/k/v/o attention"):
        LLMServingSimCompute.load(mla, model_spec("llama-3-8b"), 1)


@pytest.mark.parametrize("row, column", [("attention,0,0,1,16,,5", "decode_q_len"), (",0,0,1,16,1,5", "layer")])
def test_a_blank_kernel_or_query_length_in_attention_csv_is_refused_by_row(tmp_path, row, column):
    """Which kernel a row times and its verification length pick the rows a step is priced from: a blank one is an
    error naming the row, not a row dropped unseen."""
    root = _bundle(tmp_path, 1, 1)
    (root / "tp1" / "attention.csv").write_text(
        "layer,prefill_chunk,kv_prefill,n_decode,kv_decode,decode_q_len,time_us\n"
        + "".join(f"attention,0,0,{n},{kv},1,5\n" for n in (1, 8) for kv in (16, 32)) + row + "\n")
    with pytest.raises(ConfigError, match=f"attention.csv .*row 5 column {column}: missing"):
        LLMServingSimCompute.load(root, TINY, 1)


_FIT = "skew_fit:\n  enabled: true\n  per_tp:\n    1:\n"
_KEY = "'pc=0|n<=8|sr<=40%|kvB<=1k|kp=0'"


@pytest.mark.parametrize("meta, csv, words", [
    # crashed with an AttributeError, ValueError or TypeError
    ("skew_fit: [1]\n", None, r"meta.yaml: skew_fit must be a mapping, got \[1\]"),
    # ran: a string is no switch ('no' counted as on)
    ("skew_fit:\n  enabled: 'no'\n", None, r"meta.yaml: skew_fit.enabled must be true or false, got 'no'"),
    ("skew_fit:\n  enabled: true\n  per_tp: [1]\n", None, r"skew_fit.per_tp must be a mapping"),
    (_FIT.replace("    1:\n", "    1: 5\n"), None, r"skew_fit.per_tp.1 must be a mapping, got 5"),
    (_FIT + "      alpha_by_bucket: [1, 2]\n", None, r"skew_fit alpha_by_bucket must be a mapping"),
    (_FIT + f"      alpha_default: x\n      alpha_by_bucket: {{{_KEY}: 0.5}}\n", None,
     r"skew_fit alpha_default must be a finite number, got 'x'"),
    (_FIT + f"      alpha_default_by_layer: {{indexer: x}}\n      alpha_by_bucket: {{{_KEY}: 0.5}}\n", None,
     r"skew_fit alpha_default_by_layer 'indexer' must be a finite number"),
    (_FIT + "      alpha_by_bucket: {'pc=0|n<=abc|sr<=40%|kvB<=1k|kp=0': 0.5}\n", None,
     r"bucket label 'n<=abc' is not <axis><=X"),
    ("skew_fit:\n  enabled: true\n  bucket_axes: {n_bins: x}\n  per_tp:\n    1:\n"
     f"      alpha_by_bucket: {{{_KEY}: 0.5}}\n", None, r"skew_fit bucket_axes n_bins and n_labels must be lists"),
    (_FIT + "      alpha_default: 0.3\n", "layer,pc,n_label,skew_rate_label,kv_big_label,kp_label,alpha\n"
     "attention,0,n<=,sr<=40%,kvB<=1k,kp=0,0.5\n", r"skew_fit.csv: bucket label 'n<=' is not"),
    # ran: a NaN alpha (looked up as NaN), a label no value falls in, a kernel attention.csv does not time
    (_FIT + "      alpha_by_bucket: {'indexer|pc=0|n<=8|sr<=40%|kvB<=1k|kp=0': .nan}\n", None,
     r"alpha_by_bucket entry .* is not \[kernel\|\]pc=N"),
    (_FIT + "      alpha_default: 0.3\n", "layer,pc,n_label,skew_rate_label,kv_big_label,kp_label,alpha\n"
     "attention,0,n<=8,sr<=40%,kvB<=1k,kp=0,\n", r"skew_fit.csv \(LLMServingSim skew_fit.csv\): row 1 column alpha: "
     r"missing"),
    (_FIT + "      alpha_by_bucket: {'pc=0|n<=nan|sr<=40%|kvB<=1k|kp=0': 0.5}\n", None, r"bucket label 'n<=nan'"),
    (_FIT + "      alpha_by_bucket: {'sparse_attention|pc=0|n<=8|sr<=40%|kvB<=1k|kp=0': 0.5}\n", None,
     r"meta.yaml: skew fit for kernel\(s\) 'sparse_attention', which attention.csv does not time \(it times "
     r"'attention', 'indexer'\)"),
    (_FIT + f"      alpha_default_by_layer: {{foo: 0.1}}\n      alpha_by_bucket: {{{_KEY}: 0.5}}\n", None,
     r"skew fit for kernel\(s\) 'foo'"),
    (_FIT + "      alpha_default: 0.3\n", "layer,pc,n_label,skew_rate_label,kv_big_label,kp_label,alpha\n"
     "attention,0,n<=8,sr<=40%,kvB<=1k,kp=0,0.5\nsparse_attention,0,n<=8,sr<=40%,kvB<=1k,kp=0,0.7\n",
     r"skew_fit.csv: skew fit for kernel\(s\) 'sparse_attention'"),
    # ran: bins out of order (a value's bucket is found by bisection: it fell in the wrong one)
    ("skew_fit:\n  enabled: true\n  bucket_axes: {n_bins: [0, 64, 8, 256], n_labels: [a, b, c]}\n  per_tp:\n"
     f"    1:\n      alpha_by_bucket: {{{_KEY}: 0.5}}\n", None, r"skew_fit bucket_axes n_bins must increase"),
], ids=["fit-list", "enabled-string", "per-tp-list", "entry-number", "buckets-list", "default-string", "kernel-default-string",
        "label-letters", "bins-string", "csv-label-empty", "alpha-nan", "csv-alpha-blank", "label-nan",
        "unknown-kernel", "unknown-kernel-default", "csv-unknown-kernel", "bins-out-of-order"])
def test_a_malformed_skew_fit_is_refused_by_name(tmp_path, meta, csv, words):
    """A bundle's skew fit (meta.yaml skew_fit, tp1/skew_fit.csv) is user input: each malformed part is one error
    naming the file and the entry (several crashed with a traceback; others ran with a fit never or wrongly applied)."""
    from tests.test_sparse_attention import dsa_16l64e

    root = _deepseek_catalog_bundle(tmp_path)
    (root / "tp1" / "attention.csv").write_text(_two_kernels("indexer"))
    (root / "meta.yaml").write_text((root / "meta.yaml").read_text() + meta)
    if csv is not None:
        (root / "tp1" / "skew_fit.csv").write_text(csv)
    with pytest.raises(ConfigError, match=words):
        LLMServingSimCompute.load(root, dsa_16l64e(), 1)


@pytest.mark.parametrize("meta, words", [
    ("engine_effective: [1]\n", "engine_effective (and its hf_overrides) must be a mapping"),
    ("engine_effective:\n  hf_overrides: [1]\n", "engine_effective (and its hf_overrides) must be a mapping"),
    ("engine_effective:\n  hf_overrides: {num_attention_heads: x}\n", "profiled num_attention_heads must be a positive"),
    ("engine_effective:\n  hf_overrides: {num_attention_heads: 1.5}\n", "profiled num_attention_heads must be a positive"),
])
def test_a_bundle_meta_yaml_of_the_wrong_shape_is_refused_by_name(tmp_path, meta, words):
    """A meta.yaml whose engine section is not a mapping crashed (AttributeError), a head count of 1.5 was read as 1."""
    root = _bundle(tmp_path, 1, 1)
    (root / "meta.yaml").write_text("tp_degrees: [1]\n" + meta)
    with pytest.raises(ConfigError, match=re.escape(words)):
        LLMServingSimCompute.load(root, TINY, 1)


@pytest.mark.parametrize("stated, gpu, refused", [
    ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "rtxpro6000", False),  # LLMServingSim 5daddb2 RTXPRO6000 bundles
    ("NVIDIA H100 80GB HBM3", "h100", False),  # (its 5f18d86 H100 bundle; Vidur's alias of the same GPU)
    ("NVIDIA H100 80GB HBM3", "a100-80gb", True),
    ("Intel Arc Pro B60", "h100-sxm", False),  # a GPU profiles/gpus.yaml does not list: not judged
    (None, "h100-sxm", False),  # meta.yaml without gpu
])
def test_a_bundle_measured_on_another_gpu_is_named(tmp_path, stated, gpu, refused):
    """meta.yaml's ``gpu`` (nvidia-smi's name, an alias in profiles/gpus.yaml) against ``hardware.gpu``."""
    from sim.serving.compute_backend import bundle_gpu_misfit

    (tmp_path / "meta.yaml").write_text("{}\n" if stated is None else f"gpu: {stated}\n")
    why = bundle_gpu_misfit(tmp_path, gpu)
    assert (why is not None) == refused
    if refused:
        assert f"'{stated}' (h100-sxm, meta.yaml gpu), but hardware.gpu is {gpu}" in why
