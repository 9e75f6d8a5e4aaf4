"""The package version, in the lowest layer so that any module can name it (the download User-Agent)."""

__version__ = "0.1.0"
