"""pilotpy: an xDS control plane in Python that stands in for istiod."""

__version__ = "0.1.0"
