"""The command line's config: the keys its flags set, the config resolved from its layers, and checked for its mode.

``resolve_config`` layers the config file, overlays, preset, ``--set`` and the dedicated flags (``FLAG_KEYS``), each
validated (``sim.config.load_config``); ``check_config_for_mode`` then judges the flags and settings that only make
sense together, on the resolved config, before any work. Sweeps and plans resolve their base configs through the
same functions (``experiments.spec``), so a key is named alike wherever it was given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sim.cli import flag_name, parse_policies, parse_routers, select_mode
from sim.config import Config, load_config
from sim.config_rules import warn_slo_units
from sim.errors import InputError, quote
from sim.mode_checks import check_mode_settings
from sim.mode_settings import CLUSTER_PD, check_preset_read, check_settings_given, given_by_set

ROOT = Path(__file__).resolve().parent.parent  # the project root: main.py and the default config.yaml


def default_config_path() -> Path | None:
    """config.yaml in the working directory, else the project's own; None when neither exists."""
    for candidate in (Path("config.yaml"), ROOT / "config.yaml"):
        if candidate.is_file():
            return candidate
    return None


# The config key each dedicated flag sets (validated with the key's domain; errors name the flag).
FLAG_KEYS = {
    "workload_trace": "workload.trace",
    "workload_format": "workload.format",
    "workload_limit": "workload.limit",
    "workload_time_unit": "workload.time_unit",
    "strict_workload_validation": "workload.strict_validation",
    "workload_cache": "workload.cache",
    "seed": "seed",
    "capacity_blocks": "cache.capacity_blocks",
    "mrc_sample_rate": "cache.mrc_sample_rate",
    "allow_train_test_overlap": "cache.allow_train_test_overlap",
    "rate_scale": "workload.rate_scale",
}


def given_on_command_line(args: argparse.Namespace) -> dict[str, str]:
    """Each config key the command line sets, with how it said so (``command_line_settings``: a flag gives its key,
    ``--rate-scale`` is workload.rate_scale's)."""
    return {key: said for said, key in command_line_settings(args)}


def command_line_settings(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(what the command line says, dotted key) of each config key set on it: each ``--set`` and each dedicated flag
    given (``FLAG_KEYS``, ``--policy``, ``--router``). A sweep or plan that sets one of them itself refuses it."""
    from sim.config_yaml import set_keys

    keys = [(f"--set {key}", key) for s in args.sets for key in set_keys(s)]
    keys += [(flag_name(dest), key) for dest, key in FLAG_KEYS.items()
             if getattr(args, dest, None) is not None and getattr(args, dest, None) is not False]
    keys += [(flag, key) for flag, key, dest in (("--policy", "cache.policy", "policy"), ("--router", "cluster.router", "router"))
             if getattr(args, dest, None)]
    return keys


def resolve_config(args: argparse.Namespace, mode: str | None = None, rules: bool = True,
                   layers: dict[Path, dict] | None = None, config_said: str = "--config") -> Config:
    """Config file → overlays → preset → --set → dedicated flags, each layer validated, then the
    whole config once (``sim.config_rules.validate``; not with ``rules`` False). ``mode``: the mode whose
    ``PRESET@mode`` applies (default: the command line's; a sweep's or a plan's is the mode its runs have);
    ``layers``: ``load_config``'s; ``config_said``: what gave ``args.config`` (a spec's or plan's 'config')."""
    path = Path(args.config) if args.config else default_config_path()
    said = f"{config_said} {quote(str(path))}"
    try:
        missing = args.config and not path.is_file()
    except OSError as exc:  # a name too long, a loop of links, no permission
        raise InputError(f"{said}: {exc.strerror or exc}") from None
    if missing and path.is_symlink() and not path.exists():  # (pathlib's is_file says False for a loop of links)
        raise InputError(f"{said} is a symbolic link to nothing that exists (or a loop of links)")
    if missing:
        given_by = f" ({config_said})" if config_said != "--config" else ""
        raise InputError(f"{said}: not a file (a directory or device)" if path.exists()
                         else f"config file not found: {path}{given_by}")
    flags = [(flag_name(dest), key, getattr(args, dest)) for dest, key in FLAG_KEYS.items()
             if getattr(args, dest) is not None and getattr(args, dest) is not False]
    if args.policy:
        flags.append(("--policy", "cache.policy", parse_policies(args.policy)[0]))
    if args.router:
        flags.append(("--router", "cluster.router", parse_routers(args.router)[0]))
    set_keys = given_by_set(args.sets)
    for flag, key, _ in flags:  # (the flag is applied after --set: one of the two would be silently dropped)
        if key in set_keys:
            raise InputError(f"{flag} and {set_keys[key]} both set config key '{key}': give one of them")
    config = load_config(path, overlays=args.calibration_profile, preset=args.preset, sets=args.sets, flags=flags,
                         mode=mode or select_mode(args), rules=rules, layers=layers)
    warn_slo_units([config])  # (a sweep's axes are told by the sweep, a plan's target by the plan)
    return config


# what only a policy's replay reads of the cache settings (with every cache.tiers.* key): --mrc without --policy
# replays none (sim.mode_runs.run_cache_only)
POLICY_REPLAY_KEYS = frozenset({"cache.policy", "cache.learned_model", "cache.allow_train_test_overlap",
                                "cache.inclusion", "cache.admission", "cache.selective_write_depth", "cache.prefetch"})


def check_config_for_mode(args: argparse.Namespace, config: Config, mode: str, policies: list[str],
                          overlay_tables: dict[str, bool] | None = None) -> None:
    """Flags and settings that only make sense together with others, judged on the resolved config
    (``overlay_tables``: what --check-calibration's overlay provides, ``sim.serving.calibration.overlay_tables``)."""
    from sim.mode_settings_rules import learned_tier_policies
    from trace.sniff import check_time_unit

    given = {**learned_tier_policies(config), **given_on_command_line(args)}  # (--set's own wording where given)
    here = CLUSTER_PD if mode == "cluster" and args.pd else mode  # (--cluster --pd: the keys its roles read)
    check_preset_read(args.preset, config, here)
    check_time_unit(config.workload.trace, config.workload.format, config.workload.time_unit,
                    given.get("workload.time_unit", "workload.time_unit"))
    check_settings_given(here, config, policies, given, parse_routers(args.router), bool(args.max_rate))
    if mode == "check-calibration":
        from sim.serving.calibration import unread_serving_keys

        unread = {key: why for key, why in unread_serving_keys(overlay_tables or {}, config).items()
                  if key in given}
        if unread:
            key, why = next(iter(unread.items()))
            raise InputError(f"{given[key]}: {why}")
    if mode == "cache-only" and args.mrc and config.cache.insert_outputs:
        raise InputError("--mrc: the miss-ratio curve is of the prompt blocks alone; drop cache.insert_outputs")
    if mode == "cache-only" and args.mrc and not args.policy:  # (no policy replayed: the curve alone)
        key = next((k for k in given if k in POLICY_REPLAY_KEYS or k.startswith("cache.tiers.")), None)
        if key is not None:
            raise InputError(f"{given[key]}: --mrc alone draws LRU's miss-ratio curve over every capacity, which "
                             f"reads no {key}; add --policy to replay policies beside it, or drop it")
    if mode == "cache-only" and not args.mrc and "cache.mrc_sample_rate" in given:
        raise InputError("--set cache.mrc_sample_rate: used only with --mrc (--mrc-sample-rate)")
    check_mode_settings(mode, config, policies, cluster_pd=mode == "cluster" and args.pd)

