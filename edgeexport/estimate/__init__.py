"""Latency and energy estimates for a target: the per-layer latency model, its fit data, and the energy proxy."""
