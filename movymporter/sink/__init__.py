"""A local stand-in for the movie service: `python -m movymporter.sink`."""
