"""adapterkit's error types: one base, ``AdapterkitError``, for every mistake a user can fix.

An adapterkit error is one line naming what is wrong (``'<Thing>: <what> <name> ...'``) and,
where there is one, ending with the fix. It also carries what failed as keyword fields
(``file``, ``key``, ``strategy``, ``task``, ``option``, ``plugin``; None where they do not
apply), for programs that handle it. The CLI prints such an error as one line,
``adapterkit <command>: error: <message>``, and lets every other exception show its
traceback: a bug in the library must not read like a mistake in the config.

The errors of wrong input also derive from the builtin a caller would have caught before
(``ValueError``, ``KeyError``, ``FileNotFoundError``, ...), so code written against those
keeps working. This module imports nothing of adapterkit: every room may raise these.

``AdapterkitError``
    ``ConfigError`` (and ``ValueError``): a config, or an option of it, is wrong.
        ``UnknownNameError`` (and ``KeyError``): it names a task, head or type that does
        not exist.
        ``StrategyError``: a strategy's options or targets do not fit it or the model.
        ``SuiteError``: a comparison suite is malformed or breaks the identical pipeline.
        ``LaunchError``: a launch setting this machine or installation cannot honour.
    ``PluginError`` (and ``ValueError``): a plugin cannot be loaded or used as asked.
    ``DataError`` (and ``ValueError``): a data set file or sample is not as expected.
    ``CheckpointError`` (and ``ValueError``): a checkpoint or export file does not fit.
        ``CheckpointRefusedError`` (and ``RuntimeError``): it pickles objects outside
        the allow-list.
    ``NotMergeableError`` (and ``NotImplementedError``): a strategy cannot be folded into
    the frozen weights.
    ``MissingFileError`` (and ``FileNotFoundError``): a file the input names is not there.
    ``OutputError`` (and ``OSError``): a place a command writes to (work dir, ``--out``,
    ``--show-dir``, a checkpoint) cannot be written: a file where a folder belongs, no
    permission, a full or read-only disk.
        ``WorkDirLockedError``: another process holds the work dir.
    ``DivergedError`` (and ``FloatingPointError``): training produced a non-finite loss
    or weights.
"""
from typing import Optional

#: The keyword fields every adapterkit error carries (None where they do not apply).
FIELDS = ('file', 'key', 'strategy', 'task', 'option', 'plugin')


class AdapterkitError(Exception):
    """A mistake a user can fix, as one line; the keyword fields say what failed."""

    def __init__(self, message: str, *, file: Optional[str] = None, key: Optional[str] = None,
                 strategy: Optional[str] = None, task: Optional[str] = None,
                 option: Optional[str] = None, plugin: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.file, self.key, self.strategy = file, key, strategy
        self.task, self.option, self.plugin = task, option, plugin

    def __str__(self) -> str:  # the message as given (KeyError would quote it)
        return self.message

    @property
    def fields(self) -> dict:
        """The fields that are set, ``{name: value}``."""
        return {name: getattr(self, name) for name in FIELDS
                if getattr(self, name) is not None}


class ConfigError(AdapterkitError, ValueError):
    """A config is missing something or has a wrong value."""


class UnknownNameError(ConfigError, KeyError):
    """A config names a task, head or registered type that does not exist."""


class StrategyError(ConfigError):
    """A strategy's options or targets do not fit the strategy or the model."""


class SuiteError(ConfigError):
    """A suite file is malformed, or a member breaks the identical-pipeline rule."""


class LaunchError(ConfigError):
    """A launch setting that this machine or installation cannot honour."""


class PluginError(AdapterkitError, ValueError):
    """A plugin cannot be loaded or used as asked (one line naming the plugin)."""


class DataError(AdapterkitError, ValueError):
    """A data set file or a sample is not as expected."""


class CheckpointError(AdapterkitError, ValueError):
    """A checkpoint or export file is not of its kind or does not fit the model."""


class CheckpointRefusedError(CheckpointError, RuntimeError):
    """A checkpoint file holds pickled objects outside the allow-list."""


class NotMergeableError(AdapterkitError, NotImplementedError):
    """A strategy's adaptation cannot be folded into the frozen weights."""


class MissingFileError(AdapterkitError, FileNotFoundError):
    """A file that the input names (a config, checkpoint, data set file) is not there."""


class OutputError(AdapterkitError, OSError):
    """A work dir or output path cannot be written (the message holds the system's reason)."""


class WorkDirLockedError(OutputError):
    """Another process holds the work dir (``engine/workdir.py``)."""


class DivergedError(AdapterkitError, FloatingPointError):
    """Training produced a non-finite loss, or non-finite weights were about to be saved."""
