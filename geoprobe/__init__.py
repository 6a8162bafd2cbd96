"""Probe the geometry inside neural networks: conduit eigen-telemetry maps, spatial conv readouts, dual-gradient sweeps."""
__version__ = "0.1.0"
