"""virtio-mem (drivers/virtio/virtio_mem.c): a paravirtualized memory device whose plugged size follows the
host's `requested_size`, in Sub Block Mode (SBM) or Big Block Mode (BBM).

Sources: kernel-facts.md section 7 ([VM510] torvalds/linux virtio_mem.c@01afdee2, ~5.10, SBM only;
[VM515] the ~5.14-5.16 file with BBM and force_bbm), sections 2-4 (add_memory, onlining, the online-page
callback). One module per concept, each citing the kernel functions it follows:

- device.py: the device both modes share: probe and mode choice (virtio_mem_init), the region, the
  offline threshold, the worker and its retry timer (virtio_mem_run_wq), plug/unplug requests to the host,
  the online-page callback and the memory notifier, fake-offlining (alloc_contig_range).
- sbm.py: Sub Block Mode: subblock bitmaps per memory block, plug, unplug, the block states.
- bbm.py: Big Block Mode: whole big blocks, plug and add, bbm_safe_unplug.
- common.py: what the modes and the device share (errnos, the Mode interface).

Where the model goes beyond the kernel (virtio-mem never passes MHP_MEMMAP_ON_MEMORY, kernel-facts section
7), for the study's what-if:
- Subblocks holding vmemmap pages (the block's own altmap, or other blocks' memmaps with the node-pool or
  altmap-range strategies) and subblocks holding unmovable kernel data (another block's kmalloc memmap,
  counted in `block.unmovable` and placed in the lowest plugged subblocks) cannot be fake-offlined:
  -EBUSY, as alloc_contig_range() would fail on them. A subblock holding only the block's own memmap is
  unplugged last, together with the block: once every other subblock is gone the block is offlined and
  removed first and that subblock unplugged right after (removal first, so nothing can online a block
  whose memmap is gone; the kernel's order is unplug-then-remove, guarded by its MEM_GOING_ONLINE veto,
  which the kernel model has no hook for). The same remove-first order is used when an offline block's
  last plugged subblocks hold its memmap.
- The hotplug_mutex is modelled by applying each request's effects atomically at its completion: subblock
  bits are cleared before an unplug request is sent (a block onlined meanwhile keeps them fake-offline)
  and set after a plug request completes (then fake-onlined if the block went online meanwhile).
- The 5.14+ state order (kernel vs movable) is used for every kernel profile; 4.19 has no virtio-mem
  (merged in 5.8) and is refused.

Metrics: virtio_mem_mode ("sbm"/"bbm"), _plugged_bytes and _requested_bytes at the end, _offline_bytes_end
(offline_size), _plug_failures (plug requests the host refused), _unplug_failures (unplug passes that ended
-EBUSY), _add_failures, _retry_timer_fires, _fake_offline_pages (withheld at online), _broken.
"""

from balloonsim.drivers.virtio_mem.device import VirtioMem, VirtioMemParams

__all__ = ["VirtioMem", "VirtioMemParams"]
