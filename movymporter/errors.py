"""The importer's own exceptions. The CLI maps each family to an exit status."""

from __future__ import annotations


class MovymporterError(Exception):
    """Base of every error the importer reports to the user without a traceback."""


class ConfigError(MovymporterError):
    """A setting is missing or has a value outside what it accepts."""


class InputError(MovymporterError):
    """The input file cannot be used: missing, unreadable, not CSV, or without a required column."""


class SinkUnreachable(MovymporterError):
    """Nothing listens at URL_OUT when the run starts. (A sink lost during a run stops it from the pipeline.)"""
