"""One simulated guest on SimPy: the world (world.py), its components (onlining, workloads, controllers, user
memory and the OOM killer) and `simulate()` (simulation.py)."""
