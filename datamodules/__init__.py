"""LightningDataModules and dataset readers. Readers register by name in `READERS`."""

from datamodules.registry import DATAMODULES, READERS

__all__ = ["READERS", "DATAMODULES"]
