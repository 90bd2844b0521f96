"""tools/profile_gpu.py on CPU with tiny shapes: the tables it writes are the ones the profiled compute model reads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from sim.model_shape import ModelSpec
from sim.serving.collectives import RingCollectives
from sim.serving.compute import RooflineCompute, StepShape
from sim.serving.measured_collectives import MeasuredCollectives
from sim.serving.vidur_compute import ProfiledCompute, VidurAttention, VidurProfile
from sim.specs import gpu_spec, model_spec
from tests.conftest import ROOFLINE_EFFICIENCIES, ROOT

torch = pytest.importorskip("torch", reason="PyTorch is not installed (optional extra: pip install 'kvsim[torch]')")


@pytest.fixture
def profile_gpu(monkeypatch):
    """The tool as a module (tools/ stays on sys.path while it runs: its all-reduce workers are spawned processes)."""
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    import profile_gpu

    return profile_gpu


def _profile(tool, tmp_path, *extra: str):
    out = tmp_path / "profile"
    assert tool.main(["--model", "llama-3.1-8b", "--device", "cpu", "--tiny", "--dtype", "fp32",
                      "--out", str(out), *extra]) == 0
    return out


def test_tiny_cpu_profile_round_trips_through_the_profiled_compute_model(profile_gpu, tmp_path):
    out = _profile(profile_gpu, tmp_path)
    meta = yaml.safe_load((out / "meta.yaml").read_text())
    assert meta["device"] == "cpu" and meta["dtype"] == "fp32" and meta["torch_version"] == str(torch.__version__)
    assert {"date", "driver", "cuda_version", "timing", "grid"} <= set(meta)
    base = model_spec("llama-3.1-8b")
    shape = meta["model_shape"]
    # the tiny model keeps the 8B's proportions: GQA 4:1, MLP 3.5x wide
    assert shape["num_attention_heads"] // shape["num_kv_heads"] == base.num_attention_heads // base.num_kv_heads
    assert shape["intermediate_size"] / shape["hidden_size"] == base.intermediate_size / base.hidden_size
    spec = ModelSpec(name="tiny", num_layers=4, num_parameters=0, max_position_embeddings=4096, source="test", **shape)

    # Vidur's column layout
    mlp = pd.read_csv(out / "mlp.csv")
    vidur_mlp = pd.read_csv(ROOT.parent / "shared" / "data" / "profiles" / "vidur_a100_llama3_8b" / "mlp.csv", nrows=1) \
        if (ROOT.parent / "shared" / "data").is_dir() else None
    if vidur_mlp is not None:
        assert list(mlp.columns) == list(vidur_mlp.columns)
    attention = pd.read_csv(out / "attention.csv")
    assert {"batch_size", "prefill_chunk_size", "kv_cache_size", "is_prefill", "time_stats.attn_prefill.median",
            "time_stats.attn_decode.median", "time_stats.attn_kv_cache_save.median"} <= set(attention.columns)
    timings = mlp.filter(like="time_stats.")
    spread = [c for c in timings.columns if c.endswith(".std")]  # 0 where an op's repeats timed alike (CI saw it)
    assert (timings.drop(columns=spread).to_numpy() > 0).all() and (timings[spread].to_numpy() >= 0).all()

    model = ProfiledCompute(VidurProfile.load(out / "mlp.csv", spec, 1),
                            RooflineCompute(spec, gpu_spec("h100-sxm"), 4, 4, **ROOFLINE_EFFICIENCIES),
                            VidurAttention.load(out / "attention.csv", spec, 1, 16))
    # a decode step of 2 sequences with 16 cached tokens each (17 keys, its own included), by hand from the CSVs
    ops = [c for c in mlp.columns if c.endswith(".median") and ".emb." not in c]
    mlp_ms = float(mlp.loc[mlp["num_tokens"] == 2, ops].sum(axis=1).iloc[0])
    row = attention[(~attention["is_prefill"]) & (attention["batch_size"] == 2) & (attention["kv_cache_size"] == 16)]
    attn_ms = float(row[["time_stats.attn_decode.median", "time_stats.attn_kv_cache_save.median"]].sum(axis=1).iloc[0])
    step = StepShape.decode_batch(np.array([17, 17]))
    expected = spec.num_layers * (mlp_ms + attn_ms) * 1e-3 + model.roofline.lm_head_time(2)
    assert model.step_time(step) == pytest.approx(expected, rel=1e-9)
    assert model.decode_times(step, 1)[0] == pytest.approx(expected, rel=1e-9)
    # a prefill chunk of 8 over 16 cached tokens: the prefill row
    prefill = StepShape()
    prefill.add_prefill(8, 16)
    row = attention[attention["is_prefill"] & (attention["prefill_chunk_size"] == 8) & (attention["kv_cache_size"] == 16)]
    attn_ms = float(row[["time_stats.attn_prefill.median", "time_stats.attn_kv_cache_save.median"]].sum(axis=1).iloc[0])
    mlp_ms = float(mlp.loc[mlp["num_tokens"] == 8, ops].sum(axis=1).iloc[0])
    assert model.step_time(prefill) == pytest.approx(spec.num_layers * (mlp_ms + attn_ms) * 1e-3
                                                     + model.roofline.lm_head_time(1), rel=1e-9)
    assert not (out / "all_reduce.csv").exists()  # one device: no collectives


def test_all_reduce_over_two_cpu_processes_in_vidurs_format(profile_gpu, tmp_path):
    """--all-reduce-ranks 2 on CPU (gloo): Vidur's all_reduce.csv, which kvsim's measured collectives load."""
    out = _profile(profile_gpu, tmp_path, "--all-reduce-ranks", "2")
    reduce = pd.read_csv(out / "all_reduce.csv")
    assert set(reduce["num_workers"]) == {2} and (reduce["devices_per_node"] == 2).all()
    assert sorted(reduce["size"]) == [1024, 4096, 16384]
    measured = MeasuredCollectives.load(out, RingCollectives(1e9, 0.0))
    for size, ms in zip(reduce["size"], reduce["time_stats.all_reduce.median"], strict=True):
        assert measured.all_reduce(size, 2) * 1e3 == pytest.approx(ms)


def test_unknown_model_is_a_usage_error(profile_gpu, tmp_path, capsys):
    assert profile_gpu.main(["--model", "no-such-model", "--device", "cpu", "--tiny", "--out", str(tmp_path)]) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_a_mixture_of_experts_is_refused_before_timing(profile_gpu, tmp_path, capsys):
    """Its tables would be a dense mlp.csv, which serving refuses for an MoE model: nothing is timed or written."""
    out = tmp_path / "out"
    assert profile_gpu.main(["--model", "mixtral-8x7b", "--device", "cpu", "--tiny", "--out", str(out)]) == 2
    assert "mixtral-8x7b is a mixture of experts" in capsys.readouterr().err and not out.exists()


def test_multi_head_latent_attention_is_refused_before_timing(profile_gpu, tmp_path, capsys):
    """DeepSeek-V2-Lite without experts (n_routed_experts null): a dense MLP, but MLA, not the q/k/v/o timed here."""
    from tests.test_model_config import write_config
    from tests.test_shared_experts_mla import published

    path = write_config(tmp_path / "lite", {**published("DeepSeek-V2-Lite"), "n_routed_experts": None})
    out = tmp_path / "out"
    assert profile_gpu.main(["--model", str(path), "--device", "cpu", "--tiny", "--out", str(out)]) == 2
    assert "multi-head latent attention" in capsys.readouterr().err and not out.exists()


def test_a_plain_mlp_is_refused_before_timing(profile_gpu, tmp_path, capsys):
    """phi-2's MLP is fc1 -> gelu -> fc2; this profiler times a gated one, whose table serving would refuse."""
    out = tmp_path / "out"
    assert profile_gpu.main(["--model", "phi-2", "--device", "cpu", "--tiny", "--out", str(out)]) == 2
    assert "phi-2 has a plain (non-gated) MLP" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("argv, named", [
    # each was a traceback and "internal error" (exit 1), some after the model loaded
    (["--device", "bogus"], "--device 'bogus': expected cuda, cuda:N or cpu"),  # torch's RuntimeError
    (["--device", "meta"], "--device 'meta': expected cuda, cuda:N or cpu"),
    (["--out", "{tmp}/file"], "--out '{tmp}/file': exists and is not a directory"),  # FileExistsError
    (["--iterations", "0"], "--iterations must be at least 1, got 0"),  # ZeroDivisionError
    (["--warmup", "-1"], "--warmup must be at least 0, got -1"),
    (["--max-tokens", "8"], "--max-tokens must be at least 16, got 8"),  # empty grid: max() of nothing
    (["--max-context", "0"], "--max-context must be at least 16, got 0"),
    (["--max-kv-tokens", "0"], "--max-kv-tokens must be at least 17, got 0"),
    (["--all-reduce-ranks", "-3"], "--all-reduce-ranks must be at least 0, got -3"),
    # hours of work or a process a rank, refused before any
    (["--max-tokens", "99999999999"], "--max-tokens must be at most 131,072"),
    (["--iterations", "1000000000"], "--iterations must be at most 1,000"),
    (["--all-reduce-ranks", "100000"], "--all-reduce-ranks 100,000: at most"),
])
def test_bad_flags_are_one_line_exit_2_before_any_timing(profile_gpu, tmp_path, capsys, argv, named):
    (tmp_path / "file").write_text("")
    base = {"--device": "cpu", "--out": str(tmp_path / "out")}
    base.update(dict(zip(argv[::2], (a.format(tmp=tmp_path) for a in argv[1::2]), strict=True)))
    try:  # argparse's checks exit; the rest return the status
        status = profile_gpu.main([x for kv in base.items() for x in kv])
    except SystemExit as done:
        status = done.code
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("profile_gpu: error: "), err
    assert named.format(tmp=tmp_path) in err, err
    assert not (tmp_path / "out").exists()
