"""movymporter: load a movie CSV export into a one-object-per-POST web service."""

__version__ = "0.1.0"
