"""File sources: one interface, several implementations (bundled test data, a folder, SFTP).

A source lists the files it offers (relative names like
``daily-participation/2022-01-03-daily-participation-students.csv``) and opens one for
streaming. Landing, filtering and processing are the same whatever the source.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import IO, Protocol, runtime_checkable

from edulake.core.landing import SourceFile


@runtime_checkable
class FileSource(Protocol):
    """Something that offers files: list them, open one."""

    label: str  # for logs and reports: never holds a secret

    def list_files(self, folders: list[str]) -> list[SourceFile]:
        """Files under the given top-level folders (other folders are never listed)."""
        ...

    def open(self, file: SourceFile) -> AbstractContextManager[IO[bytes]]:
        """A binary stream of the file's bytes."""
        ...

    def close(self) -> None: ...


class FolderSource:
    """A local folder laid out like the remote server (``<folder>/<file>``)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.label = f"folder:{self.root}"

    def list_files(self, folders: list[str]) -> list[SourceFile]:
        out = []
        for folder in folders:
            base = os.path.join(self.root, folder)
            if not os.path.isdir(base):
                continue
            for entry in sorted(os.scandir(base), key=lambda e: e.name):
                if entry.is_file(follow_symlinks=False):
                    st = entry.stat()
                    out.append(SourceFile(f"{folder}/{entry.name}", st.st_size, st.st_mtime))
        return out

    @contextmanager
    def _open(self, file: SourceFile) -> Iterator[IO[bytes]]:
        path = os.path.realpath(os.path.join(self.root, file.name))
        if not path.startswith(self.root + os.sep):
            raise PermissionError(f"{file.name!r} is outside the source folder")
        with open(path, "rb") as f:
            yield f

    def open(self, file: SourceFile) -> AbstractContextManager[IO[bytes]]:
        return self._open(file)

    def close(self) -> None:
        return None
