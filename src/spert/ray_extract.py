"""Moved to :mod:`spert.runtime.ray`; this import path is kept for one release."""

import warnings

from spert.runtime.ray import *  # noqa: F403
from spert.runtime.ray import extract_shards, find_shards  # noqa: F401

warnings.warn(
    "spert.ray_extract moved to spert.runtime.ray; the old path goes in the next release",
    DeprecationWarning,
    stacklevel=2,
)
