"""The importer's own exceptions. The CLI maps each family to an exit status."""

from __future__ import annotations


class MovymporterError(Exception):
    """Base of every error the importer reports to the user without a traceback."""


class ConfigError(MovymporterError):
    """A setting is missing or has a value outside what it accepts."""


class InputError(MovymporterError):
    """The input file cannot be used: missing, unreadable, not CSV, or without a required column."""


class SinkRefused(MovymporterError):
    """The sink answered in a way that means the configuration is wrong (401, 403, 404, 405, redirects)."""


class SinkUnreachable(MovymporterError):
    """The sink could not be reached, or gave no usable answer, for longer than allowed."""
