"""Builds the oneDNN convolution kernels (`conv.cc` -> `_onednn_conv.so` next to it). Run by install.sh.

    python kdjax/kernels/onednn/build.py [--force] [--strict] [--quiet]

Needs a C++17 compiler (g++ / $CXX), jaxlib's XLA FFI headers (`jax.ffi.include_dir()`) and oneDNN's headers and
library: Debian's `libdnnl-dev` (what install.sh installs), or any oneDNN under $ONEDNN_ROOT (include/, lib/).
Idempotent: skips the compile when the source, the flags and oneDNN are those of the last build (a stamp file).
Never fails the install: without --strict a missing compiler or library is one warning line and exit status 0,
and kdjax then uses XLA's convolutions.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "conv.cc")
LIBRARY = os.path.join(HERE, "_onednn_conv.so")
STAMP = LIBRARY + ".stamp"


class BuildError(Exception):
    pass


def _find_onednn():
    """(include dir, lib dir or None, version header text) of the oneDNN to build against."""
    roots = []
    if os.environ.get("ONEDNN_ROOT"):
        roots.append(os.environ["ONEDNN_ROOT"])
    roots += [sys.prefix, "/usr/local", "/usr"]
    for root in roots:
        inc = os.path.join(root, "include")
        if os.path.exists(os.path.join(inc, "oneapi", "dnnl", "dnnl.hpp")):
            libdirs = [os.path.join(root, d) for d in ("lib", "lib64", "lib/x86_64-linux-gnu",
                                                         "lib/aarch64-linux-gnu")]
            libdir = next((d for d in libdirs if any(f.startswith("libdnnl.so") for f in _ls(d))), None)
            if libdir is None:
                continue
            with open(os.path.join(inc, "oneapi", "dnnl", "dnnl_config.h")) as f:
                config = f.read()
            with open(os.path.join(inc, "oneapi", "dnnl", "dnnl_version.h")) as f:
                version = f.read()
            return inc, libdir, config + version
    raise BuildError("oneDNN not found (apt-get install libdnnl-dev, or set ONEDNN_ROOT)")


def _ls(d):
    try:
        return os.listdir(d)
    except OSError:
        return []


def _command(out):
    cxx = shutil.which(os.environ["CXX"]) if os.environ.get("CXX") else (shutil.which("g++") or shutil.which("c++"))
    if not cxx:
        raise BuildError(f"no C++ compiler {os.environ.get('CXX', 'g++')!r} (apt-get install g++)")
    try:
        import jax
        ffi_include = jax.ffi.include_dir()
    except Exception as e:  # noqa: BLE001 - any failure here means: cannot build
        raise BuildError(f"jax's FFI headers not found ({e})")
    inc, libdir, dnnl_headers = _find_onednn()
    openmp = "DNNL_RUNTIME_OMP" in next((l for l in dnnl_headers.splitlines()
                                         if "define DNNL_CPU_THREADING_RUNTIME" in l), "")
    cmd = [cxx, "-O2", "-std=c++17", "-shared", "-fPIC", "-Wall", "-isystem", ffi_include]
    if inc != "/usr/include":  # -isystem on the default path breaks libstdc++'s #include_next
        cmd += ["-isystem", inc]
    cmd += [SOURCE, "-o", out, "-L", libdir, "-ldnnl"]
    if openmp:
        cmd.append("-fopenmp")
    if libdir not in ("/usr/lib", "/usr/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"):
        cmd.append(f"-Wl,-rpath,{libdir}")
    return cmd, dnnl_headers


def build(force: bool = False, quiet: bool = False) -> str:
    """Compiles when needed; returns what it did. Raises BuildError with the reason when it cannot."""
    cmd, dnnl_headers = _command(LIBRARY + ".tmp")
    with open(SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read() + " ".join(cmd).encode() + dnnl_headers.encode()
                                + sysconfig.get_platform().encode()).hexdigest()
    if not force and os.path.exists(LIBRARY) and os.path.exists(STAMP) and open(STAMP).read().strip() == digest:
        return f"up to date: {LIBRARY}"
    if not quiet:
        print("building oneDNN convolution kernels: " + " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        for stale in (LIBRARY, STAMP, LIBRARY + ".tmp"):  # an older build would not match this source
            if os.path.exists(stale):
                os.remove(stale)
        errors = [l for l in proc.stderr.splitlines() if "error" in l] or proc.stderr.strip().splitlines()[-3:]
        raise BuildError(f"compile failed: {' | '.join(errors[:3])}")
    os.replace(LIBRARY + ".tmp", LIBRARY)
    with open(STAMP, "w") as f:
        f.write(digest + "\n")
    return f"built: {LIBRARY}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="compile even when up to date")
    ap.add_argument("--strict", action="store_true", help="exit 1 when it cannot build")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        message = build(force=args.force, quiet=args.quiet)
    except BuildError as e:
        print(f"kdjax: warning: oneDNN convolution kernels not built: {e}; convolutions use XLA's", file=sys.stderr)
        return 1 if args.strict else 0
    if not args.quiet:
        print(message, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
