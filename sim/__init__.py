"""kvsim simulator core: config, specs, cache tiers, engine, nodes and reports."""

__version__ = "0.1.0"
