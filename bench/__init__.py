"""
Benchmarks for containerflare: request throughput and latency beside bare
twisted.web, bare Klein and Starlette on uvicorn; cold start; peak RSS; the
host command channel.  Run them with C{bench/run.sh} (see docs/benchmarks.md).

Not a test suite: nothing here is collected by pytest.  This package imports
nothing, so that each server process loads only what it serves.
"""
