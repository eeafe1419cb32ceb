"""Balloon and hotplug drivers as SimPy processes: Xen balloon, Hyper-V hv_balloon, virtio-mem, ACPI DIMM.

Each module models one Linux driver against the kernel model's API (add_memory, online-page
callbacks, generic_online_page) and cites the source of each behaviour in its docstring.
"""
