"""Fit the roofline's efficiencies and kernel floors to NVIDIA AIConfigurator's measured vLLM operators.

Reads each GPU's GEMM and attention tables (``sim.serving.operator_fit``), fits the five constants to all of them,
shows each GPU's median error with the config's values, with the fit and with a fit to the other GPUs alone, and
writes the fitted values as a calibration overlay. ``--help`` gives examples.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: the repository's packages

import sim.script_start  # noqa: E402, F401 (first: a stop while the parser's libraries load waits for its command)

# isort: split

import argparse  # noqa: E402

EPILOG = """\
Each FOLDER is an AIConfigurator systems/data/<gpu> folder (github.com/ai-dynamo/aiconfigurator,
aic-core/src/aiconfigurator_core/systems/data/, or its collector's output for your GPU) holding
gemm/vllm/<version>/gemm_perf.parquet and attention/vllm/<version>/{generation,context}_attention_perf.parquet
(or the collector's *_perf.txt CSVs); the newest version is read. Its GPU is kvsim's for the folders AIConfigurator
names a100_sxm, h100_sxm, h200_sxm, b200_sxm, l40s and rtx_pro_6000_server; write FOLDER=GPU for any other (a
profiles/gpus.yaml name or a GPU spec YAML). The constants: compute.flops_efficiency (GEMMs' share of the FLOP
peak), attention_efficiency (attention's, one per attention kernel: FlashAttention 3 on Hopper, FlashAttention 2 or
FlashInfer elsewhere; --out needs the GPUs of one), bandwidth_efficiency, gemm_floor_us (each GEMM kernel's floor),
attention_floor_us (each layer's attention call's) and attention_tile_us (each attention thread block's, with a
prefill in the step): config.yaml says what each means.

examples:
  python tools/fit_kernel_floors.py $AIC/systems/data/{a100_sxm,h100_sxm,h200_sxm,b200_sxm,l40s,rtx_pro_6000_server}
  python tools/fit_kernel_floors.py my_collector_output/h20=h20.yaml --out h20_roofline.yaml
  python main.py --calibration-profile h20_roofline.yaml --set hardware.gpu=h20.yaml
"""


def build_parser() -> argparse.ArgumentParser:
    # one-line errors; --out given twice is refused (argparse wrote the last alone); an empty path named as such
    from sim.cli import OneLineParser, path_argument

    p = OneLineParser(prog="fit_kernel_floors.py", name="fit_kernel_floors", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    p.add_argument("folders", nargs="+", metavar="FOLDER[=GPU]",
                   help="an AIConfigurator systems/data/<gpu> folder, with kvsim's GPU after '=' where kvsim does not "
                        "know the folder's name")
    p.add_argument("--config", type=path_argument, help="base YAML config whose compute values are the 'config' column "
                   "(default: the built-in defaults)")
    p.add_argument("--out", type=path_argument, help="write the fitted values as a calibration overlay (YAML)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    from sim.command import command_status

    return command_status("fit_kernel_floors", lambda: run(args, argv))


def _gpu_folders(specs: list[str]) -> list[tuple[Path, str]]:
    """(folder, kvsim GPU) of each argument, refused before any reading when the GPU is unknown."""
    from sim.errors import InputError
    from sim.serving.operator_fit import GPU_FOLDERS
    from sim.specs import resolve_gpu

    pairs, seen = [], {}
    for spec in specs:
        folder, sep, gpu = spec.partition("=")
        path = Path(folder)
        if not path.is_dir():
            raise InputError(f"{folder}: not a folder (an AIConfigurator systems/data/<gpu> folder)")
        if not sep:
            gpu = GPU_FOLDERS.get(path.resolve().name, "")
            if not gpu:
                raise InputError(f"{folder}: kvsim has no GPU for AIConfigurator's {path.resolve().name!r}: write "
                                 f"{folder}=GPU (a profiles/gpus.yaml name or a GPU spec YAML)")
        gpu = resolve_gpu(gpu)  # any spelling hardware.gpu takes; an unknown name or a bad spec file: exit 2 naming it
        if path.resolve() in seen:  # its points would count twice in the fit
            raise InputError(f"{folder}: given twice (as {seen[path.resolve()]} and {spec})")
        seen[path.resolve()] = spec
        pairs.append((path, gpu))
    return pairs


def _check_out_reads_nothing(out: Path, config: Path | None, pairs: list[tuple[Path, str]]) -> None:
    """--out must not replace what the fit reads: a table inside a folder, the --config, a GPU spec file."""
    from sim.config_yaml import names_a_path
    from sim.errors import InputError
    from sim.report.output import check_distinct

    check_distinct([("--config", config), *[(f"{folder}'s GPU spec", gpu) for folder, gpu in pairs
                                             if names_a_path(gpu)]], [("--out", out)])
    target = out.resolve()
    for folder, _ in pairs:
        if target.is_relative_to(folder.resolve()):
            raise InputError(f"--out {out} is inside {folder}, whose tables the fit reads")


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """Check the inputs (exit 2 before any fitting), fit, print the errors, write the overlay."""
    from sim.config import load_config
    from sim.errors import InputError
    from sim.report.output import atomic_write_text, check_writable
    from sim.serving.operator_fit import FIT_KEYS, Decomposed, fit, kernel_values, read_layers

    pairs = _gpu_folders(args.folders)
    if args.out is not None:
        check_writable(args.out, "--out")
        _check_out_reads_nothing(args.out, args.config, pairs)
        _check_one_kernel(pairs)
    compute = load_config(args.config, mode="single").compute
    configured = {k: getattr(compute, k) for k in FIT_KEYS}
    groups: dict[str, Decomposed] = {}
    for folder, gpu in pairs:
        repeated: list[int] = []
        points, missing = read_layers(folder, gpu, repeated)
        if not points:
            raise InputError(f"{folder}: its tables hold none of the layer shapes fitted (bf16, head size 128)")
        notes = ([f"{missing} shapes not in its tables"] if missing else []) + (
            [f"{repeated[0]} shapes measured more than once: their mean"] if repeated[0] else [])
        print(f"{folder}: {len(points)} layer points as {gpu}" + (f" ({'; '.join(notes)})" if notes else ""),
              flush=True)
        groups[f"{folder} ({gpu})"] = Decomposed(points)
    fitted = fit(list(groups.values()), configured)
    shown = [f"{k} {v:.3g}" for k, v in fitted.shared.items()]
    shown += [f"attention_efficiency {v:.3g} ({kernel})" for kernel, v in fitted.attention.items()]
    print("fitted: " + ", ".join(shown))
    print(f"{'median |error| of a layer (linear / attention / layer)':<56} {'config':>22} {'fitted':>22} "
          f"{'held out':>22}")
    for name, group in groups.items():
        others = [g for n, g in groups.items() if n != name]
        held = _errors(group, fit(others, configured).values(group.kernel)) if others else "-"
        print(f"{name:<56} {_errors(group, kernel_values(configured, group.kernel)):>22} "
              f"{_errors(group, fitted.values(group.kernel)):>22} {held:>22}")
    if args.out is not None:
        atomic_write_text(args.out, _overlay(argv, fitted.values(next(iter(groups.values())).kernel)))
        print(f"wrote {args.out}")
    return 0


def _check_one_kernel(pairs: list[tuple[Path, str]]) -> None:
    """An overlay holds one attention efficiency: --out needs GPUs that run one attention kernel."""
    from sim.errors import InputError
    from sim.serving.attention_waves import attention_kernel

    kernels: dict[str, list[str]] = {}
    for _, gpu in pairs:
        kernels.setdefault(attention_kernel(gpu), []).append(gpu)
    if len(kernels) > 1:
        runs = "; ".join(f"{kernel} on {', '.join(gpus)}" for kernel, gpus in kernels.items())
        raise InputError(f"--out: an overlay holds one compute.attention_efficiency, and these GPUs run different "
                         f"attention kernels ({runs}): fit one kernel's GPUs to write an overlay")


def _errors(group, values: dict[str, float]) -> str:
    e = group.median_errors(values)
    return f"{e['linear']:.1%} / {e['attention']:.1%} / {e['layer']:.1%}"


def _overlay(argv: list[str], values: dict[str, float]) -> str:
    import yaml

    rounded = {k: float(f"{v:.3g}") for k, v in values.items()}
    return (f"# made by: python tools/fit_kernel_floors.py {' '.join(argv)}\n"
            + yaml.safe_dump({"compute": rounded}, sort_keys=False))


if __name__ == "__main__":
    from sim.command import end_process

    end_process(main())
