"""Tests of the stores and registries: the contracts every backend meets, and each one's own."""
