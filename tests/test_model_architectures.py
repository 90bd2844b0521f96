"""A config.json read by its architecture, as vLLM picks a model's implementation ("architectures",
vllm/model_executor/models/registry.py): a model_type of its own over an architecture kvsim models is that family
(Kimi-K2's kimi_k2 over DeepseekV3ForCausalLM); any other is refused by name."""

from __future__ import annotations

import pytest

from sim.specs import model_spec
from tests.hybrid_configs import GEMMA_3_27B
from tests.test_model_config import _KIMI_K2, LLAMA_3_8B, SHAPE_FIELDS, refused, write_config


@pytest.mark.parametrize(("model_type", "architecture"), [("deepseek", "DeepseekForCausalLM"),  # DeepSeek-MoE v1
                                                         ("cohere2", "Cohere2ForCausalLM"),
                                                         ("falcon_h1", "FalconH1ForCausalLM")])
def test_other_model_types_are_refused(model_type, architecture, tmp_path, run_cli):
    path = write_config(tmp_path, {**LLAMA_3_8B, "model_type": model_type, "architectures": [architecture]})
    message = refused(run_cli, path)
    assert str(path) in message
    assert f"model_type '{model_type}' (architectures ['{architecture}']) is not modelled" in message


def test_a_model_type_of_its_own_over_a_served_architecture_is_that_architecture(tmp_path):
    """vLLM picks the implementation by "architectures": Kimi-K2's config.json says model_type "kimi_k2" over
    DeepseekV3ForCausalLM (and ships DeepSeek-V3's config class), so it is read as DeepSeek-V3 is. Its shapes from
    the Kimi-K2-Instruct model card's architecture table (61 layers, 1 dense; hidden 7168; 64 heads, MLA; 384
    experts 2048 wide, 8 a token, 1 shared; vocabulary 160K; context 128K) over DeepSeek-V3's published file."""
    kimi = _KIMI_K2
    spec = model_spec(str(write_config(tmp_path / "kimi", kimi)))
    as_v3 = model_spec(str(write_config(tmp_path / "v3", {**kimi, "model_type": "deepseek_v3"})))
    assert {f: getattr(spec, f) for f in SHAPE_FIELDS} == {f: getattr(as_v3, f) for f in SHAPE_FIELDS}
    assert spec.num_parameters == pytest.approx(1.03e12, rel=0.005)  # the Hub's count of Kimi-K2-Instruct: 1.03T
    assert spec.active_parameters == pytest.approx(32e9, rel=0.03)  # card: 32B activated
    # an unknown architecture beside a known one: the first the registry serves
    both = model_spec(str(write_config(tmp_path / "both", {**kimi, "architectures": ["KimiForX", "DeepseekV3ForCausalLM"]})))
    assert both.num_parameters == spec.num_parameters


def test_an_unknown_model_type_over_a_served_architecture_keeps_the_architectures_own_reading(tmp_path):
    """Read by its architecture, a config is read as that family's own: a multimodal one's text_config keeps the
    family's text model_type (a Gemma 3 fine-tune named otherwise still has a gemma3_text decoder, which vLLM's
    Gemma3ForConditionalGeneration reads as hf_text_config), and "architectures" given as one string is that
    architecture (vLLM's ModelRegistry._normalize_archs wraps a string in a list)."""
    gemma = model_spec(str(write_config(tmp_path / "g", GEMMA_3_27B)))
    renamed = model_spec(str(write_config(tmp_path / "r", {**GEMMA_3_27B, "model_type": "my_gemma"})))
    assert {f: getattr(renamed, f) for f in SHAPE_FIELDS} == {f: getattr(gemma, f) for f in SHAPE_FIELDS}
    kimi = model_spec(str(write_config(tmp_path / "k", _KIMI_K2)))
    one = model_spec(str(write_config(tmp_path / "s", {**_KIMI_K2, "architectures": "DeepseekV3ForCausalLM"})))
    assert one.num_parameters == kimi.num_parameters
