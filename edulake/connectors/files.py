"""File sources: one interface, several implementations (bundled test data, a folder, SFTP).

A source lists the files it offers (relative names like
``daily-participation/2022-01-03-daily-participation-students.csv``) and opens one for
streaming. Landing, filtering and processing are the same whatever the source.

Sources that read a real place (a folder, an SFTP server) can also :meth:`scan` it: the
root checked (missing, unreadable or empty is a :class:`SourceRootError`, never "0
files") and its files listed a few levels deep, so that files in the wrong places are
reported by :func:`find_misplaced`, one piece of matching code for every source.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
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


class SourceRootError(ValueError):
    """The source's root is missing, unreadable or empty, or holds none of the expected
    folders: a configuration problem that retrying cannot fix. The message names the path."""


SCAN_DEPTH = 3  # root files (1), files in its folders (2), files one folder deeper (3)


@dataclass(frozen=True)
class Tree:
    """What a scan of a source's root found: files (relative paths) and top-level folders."""

    root: str  # for messages: a path, never a secret
    files: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    # the source system's own server, which always has every expected folder (SFTP): a
    # missing one means a wrong root. A local folder may hold only some of them.
    server: bool = False


@runtime_checkable
class ScannableSource(Protocol):
    """A source over a real place whose root can be checked and scanned."""

    label: str

    def scan(self, max_depth: int = SCAN_DEPTH) -> Tree:
        """Check the root (else :class:`SourceRootError`) and list files ``max_depth`` deep."""
        ...


@dataclass(frozen=True)
class Misplaced:
    """A file that looks meant for the pipeline but is not where the source puts files."""

    path: str
    why: str


def find_misplaced(
    paths: Iterable[str],
    folders: list[str],
    is_exact: Callable[[str], bool],
    looks_like: Callable[[str], bool],
) -> list[Misplaced]:
    """Near misses among ``paths`` (relative, ``/``-separated): the one matcher every source uses.

    ``folders``: the expected top-level folders (exact spelling); ``is_exact(path)``: the
    path is a well-placed file; ``looks_like(name)``: a file name resembling an expected
    one (letter case, extension case ignored). A near miss is:

    - a file under a folder spelt like an expected one but in another letter case
      (``Daily-Participation/``), or one folder too deep (``daily-participation/Students/``),
      or an expected folder nested under another (``export/daily-participation/``);
    - a file whose name looks like an expected one anywhere else: at the root, in another
      folder, or in the right folder with another letter case or extension (``.CSV``).

    Anything else (other folders such as ``idm-reports/``, other files) is not a near miss.
    """
    lowered = {f.lower(): f for f in folders}
    out: list[Misplaced] = []
    for path in sorted(set(paths)):
        if is_exact(path):
            continue
        *dirs, name = path.split("/")
        why = _near_miss(dirs, name, folders, lowered, looks_like)
        if why:
            out.append(Misplaced(path, why))
    return out


def _near_miss(
    dirs: list[str],
    name: str,
    folders: list[str],
    lowered: dict[str, str],
    looks_like: Callable[[str], bool],
) -> str | None:
    if len(dirs) == 1 and dirs[0] in folders:
        # the right folder: only names resembling an expected one are near misses
        return (
            "file name not as expected (letter case, extension, or another folder's name?)"
            if looks_like(name)
            else None
        )
    for depth, d in enumerate(dirs):
        expected = lowered.get(d.lower())
        if expected is None:
            continue
        if d != expected:
            return f"folder {d!r} should be {expected!r} (letter case)"
        if depth > 0:
            return f"{expected}/ is nested under {'/'.join(dirs[:depth])}/"
        return f"in a subfolder: files go directly in {expected}/"
    if looks_like(name):
        return "at the root" if not dirs else f"in folder {'/'.join(dirs)}/, not a report folder"
    return None


class FolderSource:
    """A local folder laid out like the remote server (``<folder>/<file>``)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.label = f"folder:{self.root}"

    def scan(self, max_depth: int = SCAN_DEPTH) -> Tree:
        """Check the folder exists, is readable and is not empty; list its files shallowly."""
        if not os.path.exists(self.root):
            raise SourceRootError(f"the source folder {self.root} does not exist")
        if not os.path.isdir(self.root):
            raise SourceRootError(f"the source path {self.root} is not a folder")
        try:
            top = sorted(os.scandir(self.root), key=lambda e: e.name)
        except PermissionError:
            raise SourceRootError(f"the source folder {self.root} cannot be read") from None
        if not top:
            raise SourceRootError(f"the source folder {self.root} is empty")
        tree = Tree(self.root)
        self._walk(top, "", 1, max_depth, tree)
        # top-level folders may be links (a mounted share), as list_files allows
        tree.folders.extend(e.name for e in top if e.is_dir())
        return tree

    def _walk(
        self, entries: list[os.DirEntry[str]], prefix: str, depth: int, limit: int, tree: Tree
    ) -> None:
        for e in entries:
            rel = f"{prefix}{e.name}"
            if e.is_file(follow_symlinks=False):
                tree.files.append(rel)
            elif e.is_dir(follow_symlinks=depth == 1) and depth < limit:
                try:
                    below = sorted(os.scandir(e.path), key=lambda x: x.name)
                except OSError:
                    continue  # an unreadable subfolder: its report folder is checked on listing
                self._walk(below, f"{rel}/", depth + 1, limit, tree)

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
