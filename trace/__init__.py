"""Request streams: the Trace record, loaders per format, block model, synthetic workloads, statistics.

Note: this package shadows the standard library's ``trace`` module when the project
root is on ``sys.path`` (main.py and the tests put it first); kvsim never uses the
stdlib one.
"""
