"""How reclaim splits its work between page cache (file) and anonymous memory: get_scan_count() of mm/vmscan.c.

The kernel picks one balance per reclaim pass, in this order (5.9-6.18, the IO-cost model of J. Weiner's
"mm: balance LRU lists based on relative thrashing" series; shrink_node()/prepare_scan_count() set the flags):

- SCAN_FILE when anon cannot be reclaimed: no free swap slot (`!can_reclaim_anon_pages()`, 4.19
  `get_nr_swap_pages() <= 0`): "If we have no swap space, do not bother scanning anon pages."
- SCAN_EQUAL at priority 0 (near OOM) if swappiness > 0.
- SCAN_ANON when the file LRU is tiny: `file + free <= total_high_wmark && !(may_deactivate & DEACTIVATE_ANON)
  && anon >> priority` ("Global reclaim will swap to prevent OOM even with no swappiness").
- SCAN_FILE in cache_trim_mode: `file >> priority && !(may_deactivate & DEACTIVATE_FILE)`, "plenty of inactive
  file pages that aren't thrashing".
- SCAN_FRACT otherwise: `total = anon_cost + file_cost; a = total + anon_cost; f = total + file_cost;
  ap = swappiness * (a + f + 1) / (a + 1); fp = (200 - swappiness) * (a + f + 1) / (f + 1)`, and each list is
  scanned `(size >> priority) * fraction / denominator`, so the anon share of a pass is A*ap / (A*ap + F*fp).

The model's page cache is read once and never re-referenced: it stays on the inactive list and never refaults,
so DEACTIVATE_FILE is never set and reclaiming it costs no IO (file_cost stays 0). DEACTIVATE_ANON is set when
anon pages refaulted since the last reclaim pass (WORKINGSET_ACTIVATE_ANON moved). Decisions use DEF_PRIORITY: the
model reclaims what a pass is asked for in one step, and the last-resort SCAN_EQUAL of priority 0 is not reached.

This is the classic LRU, for every profile. Debian's 6.12 and 7.3 kernels (and every Debian kernel from 6.4) are
built with CONFIG_LRU_GEN_ENABLED=y (linux-config-6.12 6.12.118-1, linux-config-7.3 7.3.4-1~bpo13+1; 6.1.192 has
LRU_GEN built but off), so their root reclaim is the multi-gen LRU's (shrink_node() -> lru_gen_shrink_node()), which
picks anon or file by generation age and refault rates, not by get_scan_count(). Not modelled; replacing the choice
above by "unreferenced page cache first, all of it, then anon" moved the shipped studies' swap-out by under 0.1 %
(their page cache is nearly gone while they thrash). Both agree that swappiness 0 scans no anon while it refaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from balloonsim.kernel.swap import SWAP_CLUSTER_MAX

DEF_PRIORITY = 12  # mm/vmscan.c: reclaim starts scanning 1/4096 of each list
MAX_SWAPPINESS = 200  # vm.swappiness range 0-200 since 5.8 ("With swappiness at 100, anon and file have equal IO cost")


class ScanBalance(StrEnum):
    EQUAL = "equal"
    FRACT = "fract"
    ANON = "anon"
    FILE = "file"


@dataclass
class LruCost:
    """lruvec->anon_cost and ->file_cost: the recent cost of reclaiming each type, what SCAN_FRACT weighs."""

    anon: int = 0
    file: int = 0

    def note(self, file: bool, nr_io: int, nr_rotated: int, lrusize: int) -> None:
        """lru_note_cost() (mm/swap.c, 6.x): cost = nr_io * SWAP_CLUSTER_MAX + nr_rotated, then halve both while
        they exceed a quarter of the LRU. The kernel notes each 32-page batch and halves at most once per note; the
        model notes a whole pass at once, so it halves until the sum is back under the bound."""
        cost = nr_io * SWAP_CLUSTER_MAX + nr_rotated
        if file:
            self.file += cost
        else:
            self.anon += cost
        bound = lrusize // 4
        while self.anon + self.file > bound and (self.anon or self.file):
            self.anon //= 2
            self.file //= 2


def scan_fractions(swappiness: int, cost: LruCost) -> tuple[int, int]:
    """SCAN_FRACT's (ap, fp): the weight of scanning anon and file, from the relative reclaim costs."""
    total = cost.anon + cost.file
    a = total + cost.anon
    f = total + cost.file
    total = a + f
    ap = swappiness * (total + 1) // (a + 1)
    fp = (MAX_SWAPPINESS - swappiness) * (total + 1) // (f + 1)
    return ap, fp


def get_scan_count(
    *,
    anon: int,
    file: int,
    free: int,
    high_wmark: int,
    swap_free: int,
    swappiness: int,
    cost: LruCost,
    anon_refaulted: bool,
    priority: int = DEF_PRIORITY,
) -> tuple[ScanBalance, float]:
    """The scan balance for one reclaim pass over a node and the share of its reclaim that is anon (0..1).

    `anon`, `file` and `free` are the node's pages, `high_wmark` the sum of its zones' high watermarks."""
    if swap_free <= 0 or anon <= 0:
        return ScanBalance.FILE, 0.0
    if priority == 0 and swappiness:
        return ScanBalance.EQUAL, anon / (anon + file)
    if file + free <= high_wmark and not anon_refaulted and anon >> priority:
        return ScanBalance.ANON, 1.0
    if file >> priority:
        return ScanBalance.FILE, 0.0
    ap, fp = scan_fractions(swappiness, cost)
    weight_anon = anon * ap
    weight_file = file * fp
    if weight_anon + weight_file == 0:
        return ScanBalance.FRACT, 0.0
    return ScanBalance.FRACT, weight_anon / (weight_anon + weight_file)
