# -*- test-case-name: tests.test_logging -*-
"""
Log observers: readable text lines or Cloud Logging JSON, always on stderr.

(Minimal text observer; the logging issue adds JSON and correlation.)
"""

from __future__ import annotations

import sys
from typing import IO

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    textFileLogObserver,
)

from containerflare._environ import RuntimeConfig

_LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
}


def make_observer(config: RuntimeConfig, stream: IO[str] | None = None) -> ILogObserver:
    """
    The log observer for a configuration: never stdout, which may carry the
    stdio command channel.
    """
    out = sys.stderr if stream is None else stream
    predicate = LogLevelFilterPredicate(defaultLogLevel=_LEVELS[config.log_level])
    return FilteringLogObserver(textFileLogObserver(out), [predicate])
