"""Synthetic traffic with exact ground truth, for tests and benchmarks."""

from netspectra.synth.traffic import FlowTruth, GroundTruth, TrafficSpec, exact_truth, write_trace

__all__ = ["FlowTruth", "GroundTruth", "TrafficSpec", "exact_truth", "write_trace"]
