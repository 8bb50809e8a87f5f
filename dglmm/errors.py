"""The base class of every problem caused by the user's input (files, options, run folders).

The CLI reports an :class:`InputError` as one line with exit status 2; any other exception is an internal
error.  ``DataError`` (files), ``OptionError`` (config values) and ``CheckpointError`` derive from it.
"""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """A problem with what the user gave: a file, an option value, a run folder (one readable line)."""


class CheckpointError(InputError):
    """A checkpoint file that cannot be read safely (corrupt, truncated or not a dglmm checkpoint)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training, after the last completed epoch was saved: ``run_dir`` is the folder to give
    ``dglmm train --resume`` (None when no epoch completed, or the run keeps no folder)."""

    def __init__(self, run_dir: Path | None) -> None:
        super().__init__(str(run_dir) if run_dir is not None else "")
        self.run_dir = run_dir


class PeerFailure(RuntimeError):
    """Under ``torchrun``: another rank of the run failed or stopped answering (not an input problem; the CLI
    reports it as one line with exit status 1)."""
