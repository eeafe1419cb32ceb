"""balloonsim's bytecode cached before anything is timed, as it is on a user's machine after the first command.

pip byte-compiles a package when it installs it, and Python caches what it compiles at the first import of an
editable install. Where PYTHONDONTWRITEBYTECODE is set (as on this project's development machines) nothing is
ever cached, so every process the bench times (a cold `balloonsim`, the workers' forkserver, a Dask worker, the
analysis) compiles balloonsim's modules from source: 50-80 ms a process on the simulator's imports alone,
which no user's second command pays. The bench writes the cache first (`compileall`, into the packages' own
__pycache__ directories) with the interpreter of the installation it times, and says what it did.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

# Run by the timed installation's interpreter: an older checkout has neither this module nor anything but
# balloonsim and its drivers package (installed as balloonsim.drivers) to compile.
SNIPPET = """
import compileall, importlib.util, json, os
import balloonsim, balloonsim.drivers
roots = sorted({os.path.dirname(balloonsim.__file__), os.path.dirname(balloonsim.drivers.__file__)})
sources = [os.path.join(d, f) for root in roots for d, _, fs in os.walk(root) for f in fs if f.endswith(".py")]
missing = sum(not os.path.exists(importlib.util.cache_from_source(s)) for s in sources)
ok = all(compileall.compile_dir(root, quiet=2) for root in roots)
print(json.dumps({"roots": roots, "modules": len(sources), "compiled_now": missing, "ok": bool(ok)}))
"""


def cache_bytecode(python: str | Path) -> dict[str, Any]:
    """Byte-compile the balloonsim that `python` imports; what was there and what was written. `ok` is False
    where the package's directories cannot be written (an installation owned by another user): the figures
    then include compiling, as that installation's users' do unless pip compiled it."""
    try:
        proc = subprocess.run([str(python), "-c", SNIPPET], capture_output=True, text=True, timeout=300, cwd="/")
    except OSError as exc:
        return {"ok": False, "error": f"{python}: {exc.strerror}"}
    if proc.returncode != 0:
        return {"ok": False, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def describe(info: dict[str, Any]) -> str:
    """One line for the bench's header."""
    if not info.get("ok"):
        return f"bytecode: not cached ({info.get('error', 'a package directory is not writable')})"
    return (
        f"bytecode: cached for {info['modules']} modules ({info['compiled_now']} compiled by the bench now; "
        "every process it times then loads them, as after a user's first command)"
    )
