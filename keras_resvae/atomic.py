"""Atomic file writes: a file appears complete or not at all."""

import contextlib
import errno
import os


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renames it to `path` on success.

    The temporary name keeps `path`'s extension (Keras checks `.keras`). On error
    the temporary file is removed and `path` is left as it was.

    Example:
    >>> with atomic_path("runs/x/model.keras") as temporary:
    ...     model.save(temporary)
    """
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        yield temporary
        os.replace(temporary, path)
    except OSError as error:
        # Name the file the user asked for, not our temporary one (a full disk).
        if error.filename == temporary:
            error.filename, error.filename2 = path, None
        raise
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
