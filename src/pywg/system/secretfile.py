"""Secret files (private keys, node state): written atomically, mode 0600 from the start."""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import tempfile

__all__ = ["read_or_create_secret", "write_secret_file"]

log = logging.getLogger(__name__)


def write_secret_file(path: str, text: str | bytes, *, replace: bool = True) -> bool:
    """Write `text` (ASCII, or bytes as they are) to `path` as a 0600 file, atomically,
    whatever the umask.

    The text goes to a new temporary file in the same directory (O_EXCL, mode
    0600 from the start, never readable by others) and is flushed to disk.
    Then, with `replace`, it is renamed over `path`: a reader sees the old
    file or the whole new one, and a symlink at `path` is replaced rather than
    followed. Without `replace` it is linked to `path`, which never replaces:
    if `path` exists (another process got there first) nothing is written and
    the result is False. A failure leaves nothing behind.
    """
    data = text.encode("ascii") if isinstance(text, str) else text
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".pywg-key-", dir=directory)  # O_EXCL, 0600
    try:
        os.fchmod(fd, 0o600)  # explicit, not left to the umask
        with os.fdopen(fd, "wb") as handle:
            fd = -1
            handle.write(data)
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


def read_or_create_secret(path: str, size: int = 32) -> bytes:
    """The `size` random bytes kept in base64 at `path`, made there (mode 0600) if there is none.

    Two processes starting at once agree: the first one's file wins (written
    without `replace`) and both read it. ValueError if the file holds
    anything else; a warning if others may read it.
    """
    if not os.path.exists(path):
        text = base64.b64encode(os.urandom(size)).decode("ascii")
        write_secret_file(path, text + "\n", replace=False)
    with open(path, encoding="ascii", errors="replace") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        text = handle.read(4 * size)
    if mode & 0o077:
        log.warning("%s is readable by others (mode %o); it should be 0600", path, mode & 0o777)
    try:
        secret = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        secret = b""
    if len(secret) != size:
        raise ValueError(f"{path} does not hold a key (base64 of {size} bytes)")
    return secret
