"""edulake's benchmark: ``python -m bench`` (see docs/benchmarks.md).

It generates its own inputs, runs each contender in its own subprocess (so peak memory
is per contender) and prints one JSON document and a readable table.
"""
