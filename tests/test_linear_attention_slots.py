"""A Gated DeltaNet state in a lower tier (DRAM/SSD/EIC) takes one block slot of its capacity (vLLM's
OffloadingConnector: one fixed slot per key), so it must fit in one: every rank's padded page of a block. At vLLM's
raised block size (``_align_hybrid_block_size``: a rank's page holds a rank's state) and a TP that splits the state
evenly (vLLM ``gated_delta_net_state_shape``: divide(conv_dim, tp), divide(num_v_heads, tp)), TP pages hold TP shares:
state bytes <= slot bytes for every setting vLLM serves. These tests pin that, by hand and over the models' grid."""

from __future__ import annotations

import pytest

from sim.cache.tiers import stored_block_bytes, stored_copy_bytes
from sim.config import load_config
from sim.errors import ConfigError
from sim.serving.state_groups import check_state_model, required_block_size
from tests.linear_attention_configs import QWEN3_5_9B_TEXT
from tests.test_model_config import write_config

QWEN3_5_35B = "tests/fixtures/hf_configs/Qwen3.5-35B-A3B.json"
# a Qwen3.5-9B-shaped model whose Gated DeltaNet layers have 6 key and 12 value heads (bf16 state): vLLM serves it at
# TP 1 and 2 only (6 key heads do not divide over 4 or 8 ranks), though its 16 attention and 4 KV heads fit TP 4 and 8
ODD_HEADS = {**QWEN3_5_9B_TEXT, "linear_num_key_heads": 6, "linear_num_value_heads": 12, "mamba_ssm_dtype": "bfloat16"}


def _config(model: str, tp: int, *sets: str):
    """The run's config at the block size vLLM raises its default to (as ``serving.block_size=null`` runs it)."""
    base = [f"model={model}", f"serving.tensor_parallel_size={tp}", *sets]
    want = required_block_size(load_config(None, sets=[*base, "serving.block_size=null"]))
    return load_config(None, sets=[*base, f"serving.block_size={want}"])


def test_qwen3_next_state_and_slot_by_hand():
    # Qwen3-Next: 12 layers a group; a layer's state 1,097,728 B (conv 8,192 x 3 + recurrent 32 x 128 x 128, bf16)
    state = 12 * (8192 * 3 + 32 * 128 * 128) * 2
    assert state == 13_172_736
    # TP 4, Hopper, prefix caching: 320-token blocks; a rank's page: 1 KV head (2 over 4 ranks, replicated) x 256 x
    # K and V x 2 B = 1,024 B a token, x 12 layers; the slot: 4 ranks' pages
    config = _config("qwen3-next-80b-a3b", 4, "hardware.gpu=h100-sxm", "serving.enable_prefix_caching=true")
    assert config.serving.block_size == 320
    assert (stored_copy_bytes(config), stored_block_bytes(config)) == (state, 4 * 320 * 1024 * 12)  # 0.84 of a slot
    # the tightest: fp8 KV (512 B a token at TP 1-2) without prefix caching raises the block to 1,072 tokens, whose
    # page is exactly a layer's state (1,072 x 2 KV heads x 256 x 2 x 1 B = 1,097,728 B): the slot is full
    config = _config("qwen3-next-80b-a3b", 1, "hardware.gpu=h100-sxm", "serving.enable_prefix_caching=false",
                     "serving.kv_cache_dtype=fp8")
    assert config.serving.block_size == 1072
    assert stored_copy_bytes(config) == stored_block_bytes(config) == state


@pytest.mark.parametrize("tp", [1, 2, 4, 8])
@pytest.mark.parametrize("gpu", ["h100-sxm", "a100-80gb"])
@pytest.mark.parametrize("prefix_caching", ["true", "false"])
@pytest.mark.parametrize("kv", ["auto", "fp8"])
def test_every_served_state_fits_one_slot(tp, gpu, prefix_caching, kv, tmp_path):
    small = str(write_config(tmp_path, QWEN3_5_9B_TEXT))
    for model in ("qwen3-next-80b-a3b", QWEN3_5_35B, small):
        config = _config(model, tp, f"hardware.gpu={gpu}", f"serving.enable_prefix_caching={prefix_caching}",
                         f"serving.kv_cache_dtype={kv}")
        assert stored_copy_bytes(config) <= stored_block_bytes(config), model
        check_state_model(config, "single")  # (its guard passes)


def test_a_tp_that_splits_a_state_unevenly_is_refused(tmp_path):
    model = str(write_config(tmp_path, ODD_HEADS))
    load_config(None, sets=[f"model={model}", "serving.tensor_parallel_size=2"])  # 3 key-head groups a rank
    with pytest.raises(ConfigError, match=r"'serving.tensor_parallel_size'=8 does not fit .*\(6 key heads"):
        load_config(None, sets=[f"model={model}", "serving.tensor_parallel_size=8"])


def test_a_tp_that_splits_a_key_head_is_refused(tmp_path):
    """TP 4 divides ODD_HEADS's 12 value heads and its 3,072 conv channels (2 x 6 x 128 + 12 x 128) but not its 6 key
    heads: a rank's 768 / 4 = 192 query (and key) channels are 1.5 heads of 128, which vLLM's Qwen3.5 layer cannot view
    as whole heads (``QwenGatedDeltaNetAttention.rearrange_mixed_qkv``: view(1, seq, -1, head_k_dim)); Qwen3-Next's
    interleaved layout views the projection as num_k_heads // TP = 1 group and fails the same way
    (``fix_query_key_value_ordering``). vLLM 0.33 does not serve it, so kvsim refuses it."""
    model = str(write_config(tmp_path, ODD_HEADS))
    with pytest.raises(ConfigError, match=r"'serving.tensor_parallel_size'=4 does not fit .*\(6 key heads, 12 value "
                                          r"heads\).*divide the key heads"):
        load_config(None, sets=[f"model={model}", "serving.tensor_parallel_size=4"])


def test_the_cli_refuses_it_in_one_line(tmp_path, run_cli):
    model = str(write_config(tmp_path, ODD_HEADS))
    status, _, err = run_cli("--preset", "smoke", "--no-plot", "--quiet", "--set", f"model={model}",
                             "--set", "serving.tensor_parallel_size=8")
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "Gated DeltaNet layers (6 key heads, 12 value heads)" in err


def test_a_state_larger_than_a_slot_is_refused(tmp_path, monkeypatch):
    """Past the TP rule (switched off here), ODD_HEADS at TP 8 floors a rank's state to 1 value head: its block size
    holds that share, not an eighth of the state. By hand: a layer's state 3,072 x 3 + 12 x 128 x 128 values (conv_dim
    2 x 6 x 128 + 12 x 128), bf16: 411,648 B, x 8 layers a group (8 attention, 24 GDN) = 3,293,184 B; a rank's floored
    state 384 x 3 + 1 x 128 x 128 values = 35,072 B fits 35 tokens of 1,024 B (1 KV head x 256 x 2 x 2 B), raised to 48
    (Ampere, no prefix caching: 16-token alignment); the slot 8 ranks x 48 x 1,024 x 8 layers = 3,145,728 B."""
    from sim import config_rules

    monkeypatch.setattr(config_rules, "_tp_fits_model", lambda *_: None)
    model = str(write_config(tmp_path, ODD_HEADS))
    config = _config(model, 8, "hardware.gpu=a100-80gb", "serving.enable_prefix_caching=false")
    assert config.serving.block_size == 48
    assert (stored_copy_bytes(config), stored_block_bytes(config)) == (3_293_184, 3_145_728)
    with pytest.raises(ConfigError, match=r"3,293,184 bytes.*exceeds a lower tier's block slot \(3,145,728 bytes"):
        check_state_model(config, "single")
