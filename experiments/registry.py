"""Names that configs may use for models (LightningModules). Datamodules and readers live in
`datamodules.DATAMODULES` and `datamodules.READERS`. Nothing is imported from config strings."""

from __future__ import annotations

from datamodules.registry import Registry
from lightning_modules.gp2.module import GP2Module

MODELS = Registry("model")
MODELS["gp2"] = GP2Module
