"""A file written under a temporary local name and published whole, or not at all.

    with staging.staged_local_file("gs://bucket/data/x.h5") as local:
        write_everything(local)  # h5py and friends need a local path

A local target is written beside itself under a hidden temporary name and renamed into place
(``os.replace``: atomic on one file system). A ``gs://`` (or other remote) target is written in
the local temporary folder, copied to a hidden temporary name beside the target and renamed there.
Whatever fails, the temporary files are removed and an existing target is left untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator

from etils import epath


def is_local(path: str | os.PathLike) -> bool:
    """Whether ``path`` is on this machine's file system (no ``scheme://``)."""
    return "://" not in os.fspath(path)


@contextlib.contextmanager
def staged_local_file(target_path: str | os.PathLike) -> Iterator[str]:
    """A local path to write ``target_path``'s contents to; published when the block ends.

    The target's folder is made if it is local. On success the file is renamed (local) or
    copied and renamed (remote) into place; on any failure every temporary file is removed.
    """
    target = epath.Path(target_path)
    suffix = f".incomplete-{uuid.uuid4().hex[:8]}"
    local = is_local(target_path)
    if local:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = os.path.join(os.fspath(target.parent), f".{target.name}{suffix}")
    else:
        staging = os.path.join(tempfile.gettempdir(), f"{target.name}{suffix}")
    remote_staging = None
    try:
        yield staging
        if local:
            os.replace(staging, os.fspath(target))
        else:
            remote_staging = target.parent / f".{target.name}{suffix}"
            epath.Path(staging).copy(remote_staging)
            remote_staging.rename(target)
            remote_staging = None
    finally:
        if os.path.exists(staging):
            os.remove(staging)
        if remote_staging is not None and remote_staging.exists():
            remote_staging.unlink()
