"""Tests of whole programs: crashes, frozen and cut-off processes, the README, the benchmarks."""
