"""The reverse map of anonymous pages by zone: which task maps the anon pages of each zone.

A freed page goes back to the zone it is in (free_pages() -> page_zone(); 6.12.118 mm/page_alloc.c), so an exiting
or OOM-killed task gives each zone back what it took there; reclaim unmaps a zone's pages from the tasks that map
them there (try_to_unmap()), and migration moves a task's pages to the zones their new folios are in
(migrate_pages() -> remove_migration_ptes()).
"""

from __future__ import annotations

from sim_support import holding_guest

from balloonsim.kernel.page_alloc import Gfp, Transaction
from balloonsim.scenario import load_scenario
from balloonsim.sim.world import Sim
from balloonsim.units import PAGE_SHIFT, GiB, MiB

TASK = (16 * MiB) >> PAGE_SHIFT


def _movable_guest_filled() -> Sim:
    """A 4 GiB guest with 4 GiB more onlined to ZONE_MOVABLE, filled with 16 MiB tasks (no swap) until the first
    OOM kill: the last tasks faulted in the kernel zones once Movable was full."""
    sim = Sim(load_scenario({**holding_guest("4G"), "workload": {"name": "idle"}}), 1)
    g, mem = sim.guest, sim.memory
    g.backing.populate((8 * GiB) >> PAGE_SHIFT, (12 * GiB) >> PAGE_SHIFT)
    assert g.add_memory(0, 8 * GiB, 4 * GiB) == 0
    g.online_page_callback = None  # the driver's callback is for its own hot-adds
    for bid in sorted(g.blocks):
        assert g.online_memory_block(bid, "online_movable") == 0
    while not mem.oom_kills:
        mem.allocate(mem.spawn(f"t{mem._next_id}", TASK), TASK)
    return sim


def _rmap_matches(sim: Sim) -> bool:
    alloc, tasks = sim.guest.alloc, sim.memory.tasks.values()
    return all(z.anon == sum(t.zones.get(z, 0) for t in tasks) for z in alloc.iter_zones())


def test_a_victim_gives_the_kernel_zones_back_what_it_took_there():
    """One GFP_KERNEL page (the hot-add path's slab) in a guest whose ZONE_MOVABLE and kernel zones are full: the
    OOM killer's victim, the youngest of equal tasks, faulted in DMA32 and Normal after Movable filled, and its
    exit frees those pages there, so one kill is enough. (Freeing every victim's pages to Movable first, the model
    had killed 256 tasks for this one page.)"""
    sim = _movable_guest_filled()
    g, mem = sim.guest, sim.memory
    while g.alloc.alloc(0, 10**6, Gfp.KERNEL, partial=True):  # kernel allocations drain the kernel zones
        pass
    youngest = max(mem.tasks.values(), key=lambda t: t.id)
    kernel_zones_had = sum(n for z, n in youngest.zones.items() if not z.movable)
    assert kernel_zones_had > 0
    kills = mem.oom_kills
    assert g.alloc.alloc_slowpath(0, 1, Gfp.KERNEL, Transaction(), oom=g.out_of_memory) == 1
    assert mem.oom_kills - kills == 1 and not youngest.alive
    assert _rmap_matches(sim)


def test_the_rmap_holds_every_zones_anon_through_swap_migration_and_kills():
    """A 2 GiB guest with swap takes a 1 GiB DIMM onlined to ZONE_MOVABLE, tasks come and go, some are swapped out
    and OOM-killed, and the host ejects the DIMM (its anon pages migrate to the kernel zones): at every check, each
    zone's anon pages are exactly those the tasks map there."""
    sc = {
        "duration": "8m",
        "guest": {"boot": "2G", "swap": "512M"},
        "driver": {"name": "dimm", "dimm_size": "1G"},
        "memmap": {"strategy": "kmalloc"},
        "onlining": {"agent": "udev", "delay": 1, "online_type": "online_movable"},
        "workload": {"name": "tasks", "arrival_rate": 0.3, "lifetime": {"dist": "exponential", "mean": 90}},
        "host": {"controller": "schedule", "steps": [[10, "3G"], [300, "2G"]]},
    }
    sim = Sim(load_scenario(sc), 3)
    env, broken, seen = sim.env, [], {"movable": 0, "swapped": 0}

    def monitor():
        while True:
            if not _rmap_matches(sim):
                broken.append(env.now)
            seen["movable"] = max(seen["movable"], sum(z.anon for z in sim.guest.alloc.iter_zones() if z.movable))
            seen["swapped"] = max(seen["swapped"], sim.memory.swap.used)
            yield env.timeout(2.0)

    env.process(monitor())
    sim.run()
    m = sim.result().metrics
    assert not broken, broken[:3]
    assert seen["movable"] > 0 and seen["swapped"] > 0 and m["oom_kills"] > 0  # every path was taken
    assert m["dimms_plugged"] == 1 and not sim.guest.blocks  # the DIMM went: its pages migrated
    assert _rmap_matches(sim)
