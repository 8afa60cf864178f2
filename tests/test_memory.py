"""The Rasa server gives back the library code it mapped but does not run (bot/plugins/memory.py)."""

import subprocess
import sys
import textwrap
from pathlib import Path

from bot.plugins.memory import LARGE_LIBRARY_BYTES, read_only_library_ranges
from tests.conftest import post

SMAPS = """\
7f06b5000000-7f06b8b72000 r--p 00000000 fe:00 5433556   {big}
Rss:               60872 kB
Anonymous:             0 kB
7f06b8b72000-7f06cc0a8000 r-xp 03b72000 fe:00 5433556   {big}
Rss:              211736 kB
Anonymous:             0 kB
7f06eb3e0000-7f06ebb12000 r--p 363df000 fe:00 5433556   {big}
Rss:                7348 kB
Anonymous:          7348 kB
7f06ebb12000-7f06ebb7a000 rw-p 36b11000 fe:00 5433556   {big}
Anonymous:           184 kB
7f06ec000000-7f06ec100000 r-xp 00000000 fe:00 5433557   {small}
Anonymous:             0 kB
7f06ed000000-7f06ed100000 rw-p 00000000 00:00 0
Anonymous:          1024 kB
7f06ee000000-7f06ee100000 r--p 00000000 00:00 0         [vvar]
Anonymous:             0 kB
"""


def library_rss_kb(pid: str | int, name: str) -> int:
    """Resident kB of the mappings of the file ``name`` in process ``pid``."""
    total, inside = 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and not head[0].endswith(":"):
            inside = len(head) >= 6 and head[5].endswith(name)
        elif inside and head[0] == "Rss:":
            total += int(head[1])
    return total


def test_only_read_only_mappings_of_large_libraries_without_pages_of_their_own_are_chosen(tmp_path):
    big, small = tmp_path / "libbig.so.2", tmp_path / "libsmall.so"
    with big.open("wb") as file:
        file.truncate(LARGE_LIBRARY_BYTES)
    small.write_bytes(b"\0" * 1024)
    ranges = read_only_library_ranges(SMAPS.format(big=big, small=small))
    assert ranges == [  # not the relocated part (Anonymous), the writable one, the small library
        (0x7F06B5000000, 0x7F06B8B72000, str(big)),
        (0x7F06B8B72000, 0x7F06CC0A8000, str(big)),
    ]


def test_tensorflow_keeps_working_with_its_unused_code_unmapped():
    script = textwrap.dedent(
        """
        import os, sys
        sys.modules.setdefault("jax", None)
        import tensorflow as tf
        from bot.plugins.memory import release_unused_code
        from tests.test_memory import library_rss_kb
        product = lambda: float(tf.reduce_sum(tf.constant([[1.0, 2.0]]) @ tf.constant([[3.0], [4.0]])))
        assert product() == 11.0
        before = library_rss_kb(os.getpid(), "libtensorflow_cc.so.2")
        advised = release_unused_code()
        assert product() == 11.0
        after = library_rss_kb(os.getpid(), "libtensorflow_cc.so.2")
        print(before, after, advised)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).parent.parent, env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    before, after, advised = (int(value) for value in done.stdout.split()[-3:])
    assert advised > 100 * 2**20
    assert after < before / 2, (before, after)


def test_the_running_rasa_server_holds_little_of_tensorflows_code(servers):
    status, answer = post(f"{servers.rasa_url}/webhooks/rest/webhook", {"sender": "memory-1", "message": "hello"})
    assert status == 200 and answer
    resident_kb = library_rss_kb(servers.process("Rasa server").popen.pid, "libtensorflow_cc.so.2")
    assert 0 < resident_kb < 100 * 1024, f"{resident_kb} kB of TensorFlow's code resident"
