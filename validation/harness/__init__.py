"""The validation harness: real Linux guests under QEMU, driven over QMP, recording what the kernel reports."""
