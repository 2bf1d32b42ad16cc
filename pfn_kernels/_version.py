"""The package version (no imports: read by the command line before anything heavy loads)."""

__version__ = "0.1.0"
