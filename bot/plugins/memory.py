"""Giving back the library code the Rasa server mapped but does not run: installed by ``bot.cli.rasa_server``.

TensorFlow's library (``libtensorflow_cc.so``, 900 MB on disk) is mapped whole when Rasa imports
it, and the kernel maps its pages in large blocks (fault-around, large folios), so that after
loading a model the server holds about 300 MB of that code resident, of which a reply uses about
17 MB (measured with ``/proc/<pid>/smaps`` after a 50-user load; ``docs/performance.md``).

Once the model is loaded, ``release_unused_code`` unmaps the pages of the large libraries'
read-only mappings from the process (``madvise(MADV_DONTNEED)``). Nothing is lost: those pages
are the unchanged bytes of files on disk, and they stay in the kernel's file cache (which the
kernel frees whenever memory is needed, and which other processes mapping the same library keep
using); a page the server needs again is mapped back on its first use, from the cache or the
disk. Only mappings that hold no page of the process's own are touched: a library's pages that
its loader changed (relocations, made read-only afterwards) would be lost by this advice, so a
mapping with any such page (``Anonymous`` in ``smaps``) is left as it is, as are the writable ones.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

MADV_DONTNEED = 4
# Libraries whose read-only mappings are unmapped: those over this size on disk.
LARGE_LIBRARY_BYTES = 32 * 1024 * 1024


def read_only_library_ranges(smaps: str, large: int = LARGE_LIBRARY_BYTES) -> list[tuple[int, int, str]]:
    """``(start, end, path)`` of each read-only mapping of a large shared library in ``smaps``
    (the text of ``/proc/<pid>/smaps``) that holds only the file's own pages."""
    sizes: dict[str, int] = {}
    ranges = []
    current: tuple[int, int, str] | None = None
    for line in smaps.splitlines():
        parts = line.split(maxsplit=5)
        if parts and "-" in parts[0] and not parts[0].endswith(":"):  # a mapping's header line
            current = None
            if len(parts) < 6 or "w" in parts[1] or ".so" not in parts[5] or not parts[5].startswith("/"):
                continue
            path = parts[5].strip()
            if path not in sizes:
                try:
                    sizes[path] = os.stat(path).st_size
                except OSError:
                    sizes[path] = 0
            if sizes[path] >= large:
                start, end = (int(value, 16) for value in parts[0].split("-"))
                current = (start, end, path)
                ranges.append(current)
        elif current is not None and parts[:1] == ["Anonymous:"] and int(parts[1]) > 0:
            ranges.remove(current)  # pages of its own (relocations): not to be dropped
            current = None
    return ranges


def release_unused_code() -> int:
    """Unmaps the file pages of the large libraries' read-only mappings; the bytes advised."""
    try:
        smaps = Path("/proc/self/smaps").read_text()
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return 0
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    advised = 0
    for start, end, path in read_only_library_ranges(smaps):
        if libc.madvise(start, end - start, MADV_DONTNEED) != 0:
            logger.debug("madvise(MADV_DONTNEED) refused for %s: errno %d", path, ctypes.get_errno())
            continue
        advised += end - start
    logger.info("Unmapped %d MB of library code the server does not run (it maps back what it uses).", advised // 2**20)
    return advised


def install() -> None:
    """Releases the unused code once Rasa has loaded its model at start."""
    import rasa.core.run

    load = rasa.core.run.load_agent_on_start

    async def load_agent_on_start(*args, **kwargs):  # type: ignore[no-untyped-def]
        agent = await load(*args, **kwargs)
        release_unused_code()
        return agent

    rasa.core.run.load_agent_on_start = load_agent_on_start
