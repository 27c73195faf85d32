"""wmss_kernels: the Python (PyTorch) side of wmss-flow. See kernels/README.md."""

__version__ = "0.1.0"
