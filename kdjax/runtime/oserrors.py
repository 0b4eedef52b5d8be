"""OS-level failures (disk full, read-only, permission, a path that is a file, a busy mount) as one line each.

Orbax and TensorStore report them as ValueError/RuntimeError/XlaRuntimeError texts that merely quote the OS
message; `os_error_from` recovers the errno from such a text so that every route words it the same way.
"""

import errno
import os
import re
from typing import Optional

# errno → what to do about it (the errno's own meaning comes from os.strerror)
ADVICE = {
    errno.ENOSPC: "free some space (or point --workdir at a larger disk)",
    errno.EDQUOT: "free some space within your quota (or point --workdir at another disk)",
    errno.EFBIG: "the file system or a ulimit (ulimit -f) limits file sizes; raise it or use another disk",
    errno.EROFS: "the file system is mounted read-only; use a writable --workdir",
    errno.EACCES: "you lack permission there; fix the permissions or use another --workdir",
    errno.EPERM: "the operation is not permitted there; fix the permissions or use another --workdir",
    errno.ENOTDIR: "a part of that path is a file, not a folder; use another --workdir",
    errno.EEXIST: "a file of that name is in the way; move it or use another --workdir",
    errno.EISDIR: "a folder is where a file should be; move it or use another --workdir",
    errno.EBUSY: "it is busy (a mount point or a file in use)",
    errno.EIO: "the disk reported an input/output error; check the disk",
    errno.ENAMETOOLONG: "use a shorter --workdir path",
    errno.ENOENT: "it does not exist (was it removed while kdjax ran?)",
    errno.EMFILE: "too many open files; raise `ulimit -n`",
}

_KNOWN = sorted(ADVICE, key=lambda e: -len(os.strerror(e)))


def os_error_from(exc: BaseException) -> Optional[OSError]:
    """`exc` itself, a chained OSError, or an OSError rebuilt from an errno named in the text; None if none is."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return seen
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    for code in _KNOWN:
        if os.strerror(code) in text or re.search(rf"\b{errno.errorcode[code]}\b", text):
            path = re.search(r"""["'](/[^"']+)["']""", text)  # the first absolute path quoted
            return OSError(code, os.strerror(code), path.group(1) if path else None)
    return None


def describe(e: OSError, path: Optional[str] = None) -> str:
    """`PATH: No space left on device (ENOSPC): free some space ...` in one line."""
    code = e.errno or 0
    where = path or e.filename or ""
    if e.filename2:
        where = f"{e.filename} → {e.filename2}"
    name = errno.errorcode.get(code, "")
    meaning = e.strerror or (os.strerror(code) if code else one_line(e))
    extra = ""
    if code and meaning.startswith(os.strerror(code)):  # "No space left on device while writing ..."
        meaning, extra = os.strerror(code), meaning[len(os.strerror(code)):]
    text = f"{where}: {meaning}" if where else meaning
    if name:
        text += f" ({name})"
    text += extra
    advice = ADVICE.get(code)
    return f"{text}; {advice}" if advice else text


def one_line(text: str, limit: int = 300) -> str:
    """The first line of `text`, cut to `limit` characters."""
    first = (str(text).strip().splitlines() or [""])[0]
    return first if len(first) <= limit else first[:limit] + "..."


class _DropOrbaxTracebacks:
    """A logging filter: Orbax (through absl) and asyncio ("Task exception was never retrieved") log the traceback
    of a failed background write (a full disk) that Orbax also raises to kdjax, which reports it in one line; drop
    exactly those records: a traceback that passes through Orbax."""

    def filter(self, record) -> bool:
        if not record.exc_info or record.exc_info[1] is None:
            return True
        if "orbax" in (record.pathname or ""):
            return False
        tb = record.exc_info[2]
        while tb is not None:
            if "orbax" in tb.tb_frame.f_code.co_filename:
                return False
            tb = tb.tb_next
        return True


def quiet_orbax_tracebacks():
    """Install, once: the filter on absl's logger (Orbax logs through absl), and a guard for TensorStore's C++
    threads that complete a write's callbacks on Orbax's event loop after a failed write closed it: Python would
    print a "RuntimeError: Event loop is closed" traceback for each. Only calls made from C with no Python caller
    are dropped on a closed loop; Python callers still get the RuntimeError."""
    import asyncio
    import logging
    import sys

    for name in ("absl", "asyncio"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropOrbaxTracebacks) for f in logger.filters):
            logger.addFilter(_DropOrbaxTracebacks())
    original = asyncio.BaseEventLoop.call_soon_threadsafe
    if getattr(original, "_kdjax_guard", False):
        return

    def call_soon_threadsafe(self, *args, **kwargs):
        if self.is_closed():
            try:
                sys._getframe(1)
            except ValueError:  # called from a C++ thread: nobody to tell, and the callback is moot
                return None
        return original(self, *args, **kwargs)

    call_soon_threadsafe._kdjax_guard = True
    asyncio.BaseEventLoop.call_soon_threadsafe = call_soon_threadsafe


def close_all(*things):
    """`close()` every one of `things` even when one fails (a full disk fails them all), so that no reader thread or
    writer is left open behind an error; then raise the first failure, unless called from a `finally` that an
    error is already passing through (that one is the error to report)."""
    import sys

    in_flight = sys.exc_info()[1] is not None
    first = None
    for thing in things:
        try:
            thing.close()
        except Exception as e:
            first = first or e
    if first is not None and not in_flight:
        raise first
