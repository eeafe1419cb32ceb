"""balloonsim: where should the memmap of hot-added memory come from?"""

__version__ = "0.1.0"
