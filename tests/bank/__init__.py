"""Tests of the bank service: its actors, HTTP app, live page, command line and example."""
