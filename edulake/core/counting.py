"""Count the storage requests a lake makes: a pyarrow filesystem wrapper.

:func:`count_requests` wraps the filesystems of a :class:`~edulake.core.lake.Lake` so
every call is counted by the S3 request it stands for, then passed on unchanged:

- ``GET``: an input stream or file opened (one GetObject; a reader may issue ranged
  GETs on it, counted once: the number of objects read is what grows with history);
- ``PUT``: an output stream opened (PutObject, or one multipart upload);
- ``HEAD``: ``get_file_info`` of one path (HeadObject);
- ``LIST``: ``get_file_info`` of a selector (ListObjectsV2; one call however many pages:
  pages are counted by the S3 server, see ``tests/servers/``);
- ``COPY``, ``DELETE``, ``MOVE``, ``MKDIR``: the rest.

Tests and ``python -m bench`` use it to show that a no-op daily run costs the same
whatever the length of the lake's history. Local and S3 lakes alike.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow.fs as pafs

from edulake.core.lake import Lake, Store


@dataclass
class RequestCounter:
    """Requests by kind (thread-safe), and in total."""

    counts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self.counts[kind] += n

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self.counts.items()))

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()


class CountingHandler(pafs.FileSystemHandler):  # type: ignore[misc]
    """A pyarrow filesystem handler that counts each call, then delegates it."""

    def __init__(self, fs: pafs.FileSystem, counter: RequestCounter) -> None:
        self.fs = fs
        self.counter = counter

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CountingHandler) and other.fs.equals(self.fs)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return id(self.fs)

    def get_type_name(self) -> str:
        return f"counting+{self.fs.type_name}"

    def normalize_path(self, path: str) -> str:
        return str(self.fs.normalize_path(path))

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        self.counter.add("HEAD", len(paths))
        return list(self.fs.get_file_info(paths))

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        self.counter.add("LIST")
        return list(self.fs.get_file_info(selector))

    def create_dir(self, path: str, recursive: bool) -> None:
        self.counter.add("MKDIR")
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.counter.add("DELETE")
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.counter.add("DELETE")
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        self.counter.add("DELETE")
        self.fs.delete_dir_contents("/", accept_root_dir=True)

    def delete_file(self, path: str) -> None:
        self.counter.add("DELETE")
        self.fs.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self.counter.add("MOVE")
        self.fs.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self.counter.add("COPY")
        self.fs.copy_file(src, dest)

    def open_input_stream(self, path: str) -> Any:
        self.counter.add("GET")
        return self.fs.open_input_stream(path)

    def open_input_file(self, path: str) -> Any:
        self.counter.add("GET")
        return self.fs.open_input_file(path)

    def open_output_stream(self, path: str, metadata: Any) -> Any:
        self.counter.add("PUT")
        return self.fs.open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path: str, metadata: Any) -> Any:
        self.counter.add("PUT")
        return self.fs.open_append_stream(path, metadata=metadata)


def _counted(store: Store, counter: RequestCounter) -> Store:
    return replace(store, fs=pafs.PyFileSystem(CountingHandler(store.fs, counter)))


@contextmanager
def count_requests(lake: Lake, counter: RequestCounter | None = None) -> Iterator[RequestCounter]:
    """Count every storage request ``lake`` makes inside the block (both roots)."""
    counter = counter or RequestCounter()
    main, protected = lake.main, lake.protected
    lake.main = _counted(main, counter)
    lake.protected = lake.main if protected is main else _counted(protected, counter)
    try:
        yield counter
    finally:
        lake.main, lake.protected = main, protected
