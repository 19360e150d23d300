"""The nearest-neighbours bank of the SSL point-cloud family (lightning_modules/ssl/bank.py): rows keyed by
sample name and refreshed, mining against a brute-force search, neighbours from earlier batches, and the
module's use of it (Eq. 9)."""

from __future__ import annotations

import pytest
import torch

import lightning_modules.ssl  # noqa: F401  (registers the family)
from lightning_modules.ssl.bank import NeighbourBank
from lightning_modules.ssl.module import SSLModule


def _rows(n, S=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, S, S, generator=g), (torch.rand(n, 1, S, S, generator=g) > 0.5).float()


def test_mining_matches_brute_force_and_never_returns_the_query():
    torch.manual_seed(0)
    bank = NeighbourBank(capacity=4)  # grows past its initial capacity
    feats = torch.randn(30, 5)
    images, masks = _rows(30)
    names = [f"s{i}" for i in range(30)]
    for lo in range(0, 30, 7):  # batches of 7 (the last one short)
        bank.update(names[lo : lo + 7], feats[lo : lo + 7], images[lo : lo + 7], masks[lo : lo + 7])
    assert len(bank) == 30
    q = [3, 17, 29]
    rows = bank.update([names[i] for i in q], feats[q], images[q], masks[q])  # refresh, no new rows
    assert len(bank) == 30 and rows.tolist() == q
    nb = bank.neighbours(feats[q], rows, k=4)
    d = torch.cdist(feats[q], feats)
    d[range(3), q] = float("inf")
    ref = d.argsort(dim=1)[:, :4]
    assert nb.names == [[names[j] for j in r] for r in ref.tolist()]
    assert torch.allclose(nb.dists, d.gather(1, ref), rtol=1e-5, atol=1e-6)
    assert all(names[i] not in got for i, got in zip(q, nb.names))
    # the stored images are 8-bit: within half a level; the silhouettes exactly
    assert torch.allclose(nb.images, images[ref], atol=0.5 / 255 + 1e-6)
    assert torch.equal(nb.masks, masks[ref])
    assert nb.poses is None, "no poses were stored"
    with pytest.raises(ValueError, match="k: expected 1 <= k < 30"):
        bank.neighbours(feats[q], rows, k=30)


def test_a_refreshed_row_replaces_the_old_feature_and_a_repeated_name_shares_its_row():
    bank = NeighbourBank()
    images, masks = _rows(3)
    f = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
    bank.update(["a", "b", "c"], f, images, masks, poses=torch.zeros(3, 2))
    rows = bank.update(["c"], torch.tensor([[0.9, 0.0]]), images[2:], masks[2:], poses=torch.ones(1, 2))
    nb = bank.neighbours(torch.tensor([[1.0, 0.0]]), bank.update(["b"], f[1:2], images[1:2], masks[1:2]), k=1)
    assert nb.names == [["c"]], "c's refreshed feature (0.9) is now b's nearest, not a (0.0)"
    assert rows.tolist() == [2] and len(bank) == 3
    assert nb.poses is None, "an update without poses makes the stored poses unreliable"
    rows = bank.update(["d", "d"], torch.ones(2, 2), _rows(2)[0], _rows(2)[1])
    assert rows.tolist() == [3, 3] and len(bank) == 4


def _batch(names, seed, S=32, P=64):
    from datamodules.pointcloud import PointCloudDataModule

    e = {
        "reader": "synthetic_shapes",
        "split": "train",
        "num_samples": len(names),
        "category": "chair",
        "image_size": S,
        "num_points": P,
        "seed": seed,
    }
    dm = PointCloudDataModule(train=[e], val=[{**e, "split": "val"}], batch_size=len(names), image_size=S)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    batch["name"] = list(names)
    return batch


def test_the_module_mines_its_neighbours_from_earlier_batches_and_trains_only_the_reconstruction():
    torch.manual_seed(0)
    model = SSLModule(n_points=64, image_size=32, n_views=2, nn=True, n_neighbours=3)
    first = _batch(["a0", "a1", "a2", "a3"], seed=1)
    second = _batch(["b0", "b1"], seed=2)
    model.loss_terms(first)
    assert len(model.bank) == 4
    rec_terms, _ = model.loss_terms(second)  # 2 images, 3 neighbours: only the bank can provide them
    assert len(model.bank) == 6 and "nn" in rec_terms and torch.isfinite(rec_terms["nn"])
    rows = torch.tensor([4, 5])
    nb = model.bank.neighbours(model.rec_net(second["image"]).features, rows, 3)
    assert all(any(n.startswith("a") for n in got) for got in nb.names), nb.names
    model.zero_grad()
    (model.loss_weights["nn"] * rec_terms["nn"]).backward()
    pose_grads = [p.grad for p in model.pose_net.parameters() if p.grad is not None]
    assert all(float(g.abs().sum()) == 0.0 for g in pose_grads), "the neighbours' poses are constants"
    assert sum(float(p.grad.abs().sum()) for p in model.rec_net.parameters() if p.grad is not None) > 0
    with pytest.raises(ValueError, match="model.nn_source"):
        SSLModule(n_points=64, image_size=32, nn=True, nn_source="dataset")
