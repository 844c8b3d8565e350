"""Secret files (private keys, node state): written atomically, mode 0600 from the start."""

from __future__ import annotations

import contextlib
import os
import tempfile

__all__ = ["write_secret_file"]


def write_secret_file(path: str, text: str, *, replace: bool = True) -> bool:
    """Write `text` to `path` as a 0600 file, atomically, whatever the umask.

    The text goes to a new temporary file in the same directory (O_EXCL, mode
    0600 from the start, never readable by others) and is flushed to disk.
    Then, with `replace`, it is renamed over `path`: a reader sees the old
    file or the whole new one, and a symlink at `path` is replaced rather than
    followed. Without `replace` it is linked to `path`, which never replaces:
    if `path` exists (another process got there first) nothing is written and
    the result is False. A failure leaves nothing behind.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".pywg-key-", dir=directory)  # O_EXCL, 0600
    try:
        os.fchmod(fd, 0o600)  # explicit, not left to the umask
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            fd = -1
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
