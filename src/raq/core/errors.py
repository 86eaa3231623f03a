"""One small error hierarchy; the CLI turns any of these into one line and exit code 2."""

from __future__ import annotations


class RaqError(Exception):
    """Base for errors whose message is written for the user."""


class ConfigError(RaqError):
    """The run config is invalid: the message names the file, the key path and the problem."""


class DatasetError(RaqError):
    """The dataset cannot be loaded or mapped to questions and answers."""


class EndpointError(RaqError):
    """An endpoint is unreachable or refuses us before the run starts."""


class StoreError(RaqError):
    """A run directory or cache holds files raq did not write or cannot read."""


class InputError(RaqError):
    """A file given on the command line (ranks, run directory) is missing or malformed."""
