"""The losses package's contract: every public loss importable from `losses` itself, the same objects as in
their modules, and no import of the layers above it (datamodules, lightning_modules, experiments)."""

from __future__ import annotations

import importlib
import inspect

from helpers import modules_loaded_by

MODULES = ("losses.depth", "losses.rgpd", "losses.ssl_pointcloud", "losses.ttp")


def _public_names(module) -> set[str]:
    """Names a module defines for its users: its own functions and classes, and its UPPER_CASE constants."""
    names = set()
    for name, obj in vars(module).items():
        if name.startswith("_") or inspect.ismodule(obj):
            continue
        if inspect.isfunction(obj) or inspect.isclass(obj):
            if obj.__module__ == module.__name__:
                names.add(name)
        elif name.isupper():
            names.add(name)
    return names


def test_every_exported_name_is_its_modules_object():
    import losses

    assert len(losses.__all__) == len(set(losses.__all__)), "duplicate names in losses.__all__"
    for name in losses.__all__:
        obj = getattr(losses, name)  # importable from the package
        homes = [m for m in MODULES if getattr(importlib.import_module(m), name, None) is obj]
        assert homes, f"losses.{name} is not the object of that name in any of {MODULES}"


def test_every_public_loss_is_exported():
    import losses

    for module_name in MODULES:
        missing = _public_names(importlib.import_module(module_name)) - set(losses.__all__)
        assert not missing, f"public names of {module_name} missing from losses.__all__: {sorted(missing)}"


def test_from_losses_import():
    from losses import GP2Loss, pairwise_l1_loss
    from losses.depth import GP2Loss as GP2LossDepth
    from losses.depth import pairwise_l1_loss as depth_pairwise_l1_loss

    assert pairwise_l1_loss is depth_pairwise_l1_loss and GP2Loss is GP2LossDepth


def test_losses_imports_nothing_above_it():
    bad = modules_loaded_by(
        "losses", ("datamodules", "lightning_modules", "experiments", "pytorch_lightning", "lightning")
    )
    assert not bad, f"losses imported: {bad}"
