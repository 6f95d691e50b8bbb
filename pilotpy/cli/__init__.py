"""pilotpy's command line."""

from pilotpy.cli.main import main

__all__ = ["main"]
