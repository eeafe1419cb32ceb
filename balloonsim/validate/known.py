"""Known disagreements between the model and the real kernels: validation/known-disagreements.toml.

Each entry names the rows it covers (glob patterns, or lists of them, on case, kernel and quantity), the
reason, and for numbers
optionally `within`: how far apart the two may be while the entry covers them, so a known disagreement that
grows still fails. A row covered by an entry is shown as a known disagreement and does not fail validation.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path

from balloonsim.errors import UserError


def _match(value: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


@dataclass(frozen=True)
class Known:
    case: tuple[str, ...]  # glob patterns; a row matches when any of them does
    kernel: tuple[str, ...]
    quantity: tuple[str, ...]
    reason: str
    within: int | None = None
    index: int = 0  # position in the file, to report entries that no longer match anything
    summary: str = ""  # one line for a study's report (`coverage`); `reason` says it with the source

    def covers(self, case: str, kernel: str, quantity: str, real, model) -> bool:
        if not (_match(case, self.case) and _match(kernel, self.kernel) and _match(quantity, self.quantity)):
            return False
        if self.within is None:
            return True
        return isinstance(real, int) and isinstance(model, int) and abs(real - model) <= self.within


def load_known(path: Path) -> list[Known]:
    if not path.exists():
        return []
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path.name}: {exc}") from None
    out = []
    for i, d in enumerate(doc.get("disagreement", [])):
        where = f"{path.name}: disagreement[{i}]"
        unknown = set(d) - {"case", "kernel", "quantity", "reason", "within", "summary"}
        if unknown:
            raise UserError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        if not d.get("reason") or not d.get("quantity"):
            raise UserError(f"{where}: needs 'quantity' and 'reason'")
        within = d.get("within")
        if within is not None and (not isinstance(within, int) or within < 0):
            raise UserError(f"{where}.within: must be a non-negative integer")
        globs = {}
        for key in ("case", "kernel", "quantity"):
            v = d.get(key, "*")
            v = [v] if isinstance(v, str) else v
            if not isinstance(v, list) or not v or not all(isinstance(p, str) for p in v):
                raise UserError(f"{where}.{key}: must be a glob pattern or a list of them")
            globs[key] = tuple(v)
        summary = d.get("summary", "")
        if not isinstance(summary, str):
            raise UserError(f"{where}.summary: must be a string")
        reason = " ".join(d["reason"].split())
        summary = " ".join(summary.split())
        out.append(Known(globs["case"], globs["kernel"], globs["quantity"], reason, within, i, summary))
    return out
