"""What one of kvsim's input files is, from its shape, so a file given where another kind belongs is named for what it
is, with the flag or key that takes it.

An NS-3 table passed to ``--check-calibration`` (or ``--calibration-profile``, ``--config``) was read as a config
overlay and refused for its first key (``unknown config key '_source'``); a trace as "the top level must be a mapping,
got str"; an overlay given as ``--workload-trace`` as an "unrecognised trace header". ``other_kind`` is asked only
once a file has failed as the kind it was given as, so it never changes what a good file does; it knows the kinds by
content a file of the other kind has no reason to hold (keys no config section has, a trace's header, a binary
file's magic bytes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

SNIFF_BYTES = 1 << 16  # a binary file's magic, a LightGBM model's header: the first bytes are enough
MAX_PARSED_BYTES = 16 << 20  # a JSON or YAML file parsed whole to know it (sim.config_yaml.MAX_YAML_BYTES)


class Kind(NamedTuple):
    key: str  # "config", "trace", "ns3", "gpu", "sidecar", ...: what a caller names as the kind it expected
    what: str  # "an NS-3 network lookup table"
    how: str  # "pass it as network.lookup (...)"


def other_kind(path: Path, expected: str, data: Any = None) -> str | None:
    """``this is <kind>, not <expected's>; pass it as ...`` for a file of another kind than ``expected`` (a
    ``Kind.key``), or None (not a kind kvsim knows, or the expected one: its own message stands)."""
    found = file_kind(path, data)
    if found is None or found.key.partition("-")[0] == expected:  # (a GPU table given as a GPU spec: its message)
        return None
    return f"this is {found.what}, not {EXPECTED[expected]}; {found.how}"


EXPECTED = {"config": "a YAML file of config keys", "trace": "a trace", "ns3": "an NS-3 table (JSON rows of size and "
            "time)", "gpu": "a GPU spec", "lightgbm": "a LightGBM model"}


def file_kind(path: Path, data: Any = None) -> Kind | None:
    """The kind of a file kvsim reads somewhere, or None. ``data``: the file already parsed (YAML, JSON), when it
    was."""
    try:
        if not path.is_file():  # (a FIFO or device would be read forever)
            return None
        with path.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
        size = path.stat().st_size
    except OSError:
        return None
    from trace.cache import MAGIC

    if head.startswith(MAGIC):
        return Kind("workload-cache", "a kvsim workload cache", "pass it as --workload-cache (beside the trace it "
                                                                 "was made from)")
    if head.startswith(b"tree\n"):  # LightGBM's model text (learned.sidecar.model_text_defect reads the same header)
        return Kind("lightgbm", "a LightGBM model (the learned policy's)", "pass it as cache.learned_model (--set "
                                                                           "cache.learned_model=PATH)")
    if data is None and size <= MAX_PARSED_BYTES:
        data = _parsed(path, head)
    if isinstance(data, dict):
        found = _mapping_kind(path, data)
        if found is not None:
            return found
    return _table_kind(path)


def _parsed(path: Path, head: bytes) -> Any:
    """The file as JSON (an object's first byte) or YAML, or None."""
    from sim.config_yaml import load_yaml

    try:
        text = path.read_bytes().decode("utf-8")
        return json.loads(text) if head.lstrip().startswith(b"{") else load_yaml(text)
    except Exception:  # noqa: BLE001 (any file that does not parse is simply not a mapping kind)
        return None


def _mapping_kind(path: Path, data: dict) -> Kind | None:
    from experiments.plan_file import PLAN_KEYS
    from experiments.spec import SPEC_KEYS
    from sim.config import Config
    from sim.serving.network import SIZE_KEYS

    keys = {str(k) for k in data}
    values = [v for v in data.values() if isinstance(v, dict)]
    if keys and keys <= set(Config.__dataclass_fields__):
        return Kind("config", "a YAML file of config keys", "pass it as --config or --calibration-profile")
    if "kvsim_learned_model" in keys:  # sim.config_fields.sidecar_path: the model's path + ".json"
        model = path.name[:-len(".json")] if path.name.endswith(".json") else "MODEL"
        return Kind("sidecar", "a learned model's sidecar", f"pass the model beside it ({model}) as "
                                                            "cache.learned_model")
    rows = data.get("rows")
    if isinstance(rows, list) and rows and isinstance(rows[0], dict) and any(k in rows[0] for k in SIZE_KEYS):
        return Kind("ns3", "an NS-3 network lookup table", "pass it as network.lookup (network: {lookup: PATH} in an "
                                                           "overlay, or --set network.lookup=PATH)")
    if "schema_version" in keys and "runs" in keys:
        return Kind("report", "a kvsim report (a run's output)", "its 'config' is the run's whole config, which a "
                                                                 "YAML file of config keys may copy")
    if "dense_bf16_tflops" in keys:
        return Kind("gpu", "a GPU spec", "pass it as hardware.gpu (--set hardware.gpu=PATH)")
    if values and all("dense_bf16_tflops" in v for v in values):
        return Kind("gpu-table", "a table of GPU specs", "hardware.gpu takes an entry's name, or a file of one "
                                                         "entry's fields")
    if values and all("num_layers" in v and "hidden_size" in v for v in values):
        return Kind("model-table", "a table of model specs", "model takes an entry's name, or a Hugging Face "
                                                             "config.json")
    if "num_hidden_layers" in keys or "architectures" in keys:
        return Kind("hf-config", "a Hugging Face model config", "pass it as model (--set model=PATH)")
    if "profiler_version" in keys or "vllm_version" in keys:
        return Kind("bundle", "a profile bundle's meta.yaml", "pass its folder as compute.profile (with "
                                                              "compute.backend: profiled)")
    if "axes" in keys and keys <= set(SPEC_KEYS):
        return Kind("sweep", "a sweep spec", "pass it as --sweep")
    if ("target" in keys or "search" in keys) and keys <= set(PLAN_KEYS):
        return Kind("plan", "a plan", "pass it as --plan")
    return None


# Profile tables by their columns (Vidur's, AIConfigurator's): the config key that takes them
_TABLES = (
    ({"num_tensor_parallel_workers"}, Kind("vidur", "a Vidur operator table", "pass its folder as compute.profile "
                                                                              "(with compute.backend: profiled)")),
    ({"num_workers", "size", "devices_per_node"}, Kind("collectives", "a Vidur collective table",
                                                      "pass it as compute.collectives")),
    ({"op_name", "num_gpus", "message_size", "latency"}, Kind("collectives", "an AIConfigurator collective table",
                                                              "pass it as compute.collectives")),
)


def _table_kind(path: Path) -> Kind | None:
    """A trace (its format sniffed as the loader sniffs it) or a profile table, by its first line."""
    from sim.errors import InputError
    from trace.readers import first_line
    from trace.sniff import sniff_format

    try:
        return Kind("trace", f"a trace ({sniff_format(path)} format)", "pass it as --workload-trace")
    except (InputError, OSError, ValueError):
        pass
    try:
        header = {name.strip().strip('"') for name in first_line(path).split(",")}
    except (InputError, OSError, ValueError):
        return None
    return next((kind for columns, kind in _TABLES if columns <= header), None)
