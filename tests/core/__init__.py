"""Tests of the actor runtime: actors, channels, the node's operations, timers, saves."""
