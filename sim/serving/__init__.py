"""Serving with timing: the event engine, instances (scheduler, KV block pool, continuous
batching), compute and network models, routers, and the single-node and PD runs."""
