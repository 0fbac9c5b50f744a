"""A run directory claimed by one process: never a foreign folder, never two writers.

`resvae fit` writes and rewrites many files in its `--out` folder (history rows,
checkpoints, the model, images). Pointed at a folder of the user's own, or at a
folder that another `resvae fit` is writing, it would destroy or interleave
their contents. `RunFolder` refuses both before anything is written, and
removes what a run wrote when it fails before its first checkpoint, so a run
that never started leaves the folder as it found it.

The lock is an advisory `flock` on a lock file that holds the owner's PID: the
kernel releases it when its process ends, however it ends (kill -9 included),
so a lock left by a killed run is simply taken over.
"""

import contextlib
import os
import shutil

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not locked.
    fcntl = None

LOCK_FILE = ".resvae.lock"


class RunFolder:
    """Claims a run directory for this process (a context manager).

    On entry: refuses a path that is a file, and a folder with files (other
    than hidden ones) but no `marker` file (it is not a run of ours); creates
    the folder; takes its lock, or raises a ValueError naming the process that
    holds it. On exit: releases the lock, and if `discard_on_exit` was set,
    removes every entry the run created (and the folder, if the run created it).

    Args:
        path: str. The run directory.
        marker: str. The file every run directory holds (its configuration).

    Example:
    >>> with RunFolder("runs/r18") as folder:
    ...     train_into("runs/r18")
    """

    def __init__(self, path, marker="config.json"):
        self.path = path
        self.marker = marker
        self.discard_on_exit = False
        self.created = False  # True when entering created the folder
        self._lock = None
        self._entries_before = set()

    def __enter__(self):
        if not self.path:
            raise ValueError("The run folder's path is empty: name a folder with --out.")
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise ValueError(f"{self.path} is a file; a run needs a folder: choose another --out.")
        # Hidden files (.DS_Store, our lock) are never written over by a run.
        entries = os.listdir(self.path) if os.path.isdir(self.path) else []
        entries = {name for name in entries if not name.startswith(".")}
        if entries and self.marker not in entries:
            raise ValueError(
                f"{self.path} is not empty and is not a keras-resvae run (it has no "
                f"{self.marker}): choose a new or empty folder for --out, so that nothing in "
                "it is overwritten."
            )
        self.created = not os.path.exists(self.path)
        os.makedirs(self.path, exist_ok=True)
        self._lock = _acquire_lock(os.path.join(self.path, LOCK_FILE), self.path)
        self._entries_before = set(os.listdir(self.path))
        return self

    def __exit__(self, kind, error, traceback):
        # Discard while still holding the lock: once it is released, another
        # process may claim the folder, and its files must not be touched.
        if self.discard_on_exit:
            self._discard_new_entries()
        _release_lock(self._lock, os.path.join(self.path, LOCK_FILE))
        self._lock = None
        if self.discard_on_exit and self.created:
            with contextlib.suppress(OSError):
                os.rmdir(self.path)  # only if it is empty: nobody claimed it meanwhile
        return False

    def _discard_new_entries(self):
        # The lock file was there before the snapshot, so it is not among these.
        for name in set(os.listdir(self.path)) - self._entries_before:
            entry = os.path.join(self.path, name)
            if os.path.isdir(entry) and not os.path.islink(entry):
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(entry)


def _acquire_lock(path, folder):
    """Opens and locks `path`, writing this process's PID; returns the descriptor."""
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:
            return descriptor
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(descriptor)
            os.close(descriptor)
            holder = f"process {owner}" if owner else "another process"
            raise ValueError(
                f"{folder} is in use by {holder} (another resvae fit writes it): wait for "
                "it to finish, or choose another --out."
            ) from None
        # The previous holder may have removed the file between our open and our
        # lock; then the lock we hold is on a file nobody else will open.
        try:
            same = os.path.samestat(os.fstat(descriptor), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"{os.getpid()}\n".encode())
            return descriptor
        os.close(descriptor)


def _read_owner(descriptor):
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(descriptor, 32, 0).decode().strip())
    return None


def _release_lock(descriptor, path):
    if descriptor is None:
        return
    # Removing the file while still holding the lock: a process that opens it
    # after this either sees it gone or finds it locked, never a free stale file.
    with contextlib.suppress(OSError):
        os.remove(path)
    os.close(descriptor)
