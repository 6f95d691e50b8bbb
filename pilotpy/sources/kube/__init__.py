"""The Kubernetes source: list+watch informers against the API server, on the asyncio loop."""

from pilotpy.sources.kube.api import ApiError, KubeApi
from pilotpy.sources.kube.connection import Connection, KubeConfigError, load_connection
from pilotpy.sources.kube.source import KubeSource

__all__ = ["ApiError", "Connection", "KubeApi", "KubeConfigError", "KubeSource",
           "load_connection"]
