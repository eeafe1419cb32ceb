"""The batch progress bar: runs done, failures and ETA; silent off a terminal or with --quiet."""

from __future__ import annotations

import sys

from tqdm import tqdm


class Progress:
    def __init__(self, total: int, done: int, label: str, quiet: bool):
        enabled = not quiet and sys.stderr.isatty()
        self.failed = 0
        self._bar = tqdm(
            total=total,
            initial=done,
            desc=label,
            unit="run",
            disable=not enabled,
            file=sys.stderr,
            dynamic_ncols=True,
            smoothing=0.1,
        )
        self._bar.set_postfix(failed=0, refresh=False)

    def advance(self, ok: bool) -> None:
        if not ok:
            self.failed += 1
            self._bar.set_postfix(failed=self.failed, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()
