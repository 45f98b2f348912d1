"""Helpers shared by the benchmark scripts."""

import os
from pathlib import Path


def drop_page_cache() -> bool:
    """Ask the kernel to forget cached file pages (root only); True when it worked."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True
