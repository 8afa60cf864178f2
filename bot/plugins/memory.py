"""Giving back the library code the Rasa server mapped but does not run: installed by ``bot.cli.rasa_server``.

TensorFlow's library (``libtensorflow_cc.so``, 900 MB on disk) is mapped whole when Rasa imports
it, and the kernel maps its pages in large blocks (fault-around, large folios), so that after
loading a model the server holds about 300 MB of that code resident, of which a reply uses about
17 MB (measured with ``/proc/<pid>/smaps`` after a 50-user load; ``docs/performance.md``).

Once the model is loaded, ``release_unused_code`` asks the kernel to page out the read-only
file-backed mappings of the large libraries (``madvise(MADV_PAGEOUT)``, Linux 5.4 and later).
Nothing is lost: those pages are the unchanged bytes of files on disk; a page the server needs
again is read back on its first use (the first messages after a start or a model swap). Pages a
library changed at load (relocations) are private memory of the process and are left as they are:
the kernel pages out only clean file pages here, and the writable and anonymous mappings are not
touched at all. Where the kernel does not know the advice, nothing happens.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

MADV_PAGEOUT = 21
# Libraries whose mapped code is paged out: those over this size on disk.
LARGE_LIBRARY_BYTES = 32 * 1024 * 1024


def read_only_library_ranges(maps: str, large: int = LARGE_LIBRARY_BYTES) -> list[tuple[int, int, str]]:
    """``(start, end, path)`` of each read-only mapping of a large shared library in ``maps``
    (the text of ``/proc/<pid>/maps``)."""
    sizes: dict[str, int] = {}
    ranges = []
    for line in maps.splitlines():
        parts = line.split(maxsplit=5)
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
            ranges.append((start, end, path))
    return ranges


def release_unused_code() -> int:
    """Pages out the read-only mappings of the large libraries of this process; the bytes advised."""
    try:
        maps = Path("/proc/self/maps").read_text()
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return 0
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    advised = 0
    for start, end, path in read_only_library_ranges(maps):
        if libc.madvise(start, end - start, MADV_PAGEOUT) != 0:
            logger.debug("madvise(MADV_PAGEOUT) refused for %s: errno %d", path, ctypes.get_errno())
            return advised  # an older kernel: the same answer for every range
        advised += end - start
    logger.info("Paged out %d MB of mapped library code the server does not run.", advised // 2**20)
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
