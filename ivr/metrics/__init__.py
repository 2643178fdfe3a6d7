"""What an operator watches: Prometheus figures at ``/metrics`` and the service's health at
``/healthz``.

* :mod:`ivr.metrics.in_process`: counters and latency histograms this instance keeps in
  memory (reconnects, per-step latencies of the call flow);
* :mod:`ivr.metrics.policy_figures`: the policy's figures read from PostgreSQL at scrape
  time (calls and decisions, notices, callbacks, revocations, deletions), right across
  restarts and across instances sharing one database;
* :mod:`ivr.metrics.exposition`: both in Prometheus' text format;
* :mod:`ivr.metrics.health`: which parts of the service are up.
"""
