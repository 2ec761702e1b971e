"""Tests of what a node reports: stats sinks, logging, Prometheus."""
