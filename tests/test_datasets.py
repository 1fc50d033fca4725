"""Torch datasets on a cache: normalisation, reports, labels, splits, lead masking, DataLoader workers."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from melp.data.adapters import get_adapter
from melp.data.cache import ECGCache, build_cache
from melp.data.datasets import ECGLabelDataset, ECGTextDataset, batch_loader, lead_mask
from melp.data.preprocess import PreprocessConfig, normalize

from datafixtures import known_signal, write_cinc_mat, write_ludb


@pytest.fixture(scope="module")
def ludb_cache(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ds")
    root = write_ludb(tmp / "ludb", 8)
    (root / "data" / "8.hea").write_text((root / "data" / "8.hea").read_text().split("#")[0])  # no report
    build_cache(get_adapter("ludb"), root, tmp / "cache", shard_size=3, progress=False)
    return ECGCache(tmp / "cache")


def test_text_dataset_items(ludb_cache):
    ds = ECGTextDataset(ludb_cache)
    assert len(ds) == 7  # record 8 has an empty report: nothing to pair it with
    item = ds[2]
    i = item["index"]
    assert ludb_cache.index.loc[i, "record_id"] == "3"
    assert item["report"] == ludb_cache.index.loc[i, "report"] and item["report"].startswith("Rhythm: Sinus rhythm.")
    expected = normalize(ludb_cache.signal(i), "minmax")
    assert item["ecg"].dtype == torch.float32 and item["ecg"].shape == (12, 5000)
    np.testing.assert_allclose(item["ecg"].numpy(), expected, atol=1e-6)
    assert float(item["ecg"].min()) == 0.0 and float(item["ecg"].max()) == pytest.approx(1.0)


def test_split_filter_and_label_dataset(ludb_cache):
    splits = ludb_cache.index["split"]
    for split in ("train", "val", "test"):
        ds = ECGTextDataset(ludb_cache, split=split)
        assert all(splits[item["index"]] == split for item in (ds[k] for k in range(len(ds))))
    labels = ECGLabelDataset(ludb_cache, "ludb")
    classes = labels.classes
    assert classes == ludb_cache.tasks["ludb"] and len(labels) == 8
    item = labels[0]
    want = {"Sinus rhythm", "Electric axis of the heart: normal", "Left ventricular hypertrophy",
            "Left atrial hypertrophy"}
    assert {c for c, v in zip(classes, item["labels"].tolist()) if v == 1.0} == want
    with pytest.raises(KeyError, match="no task"):
        ECGLabelDataset(ludb_cache, "super")
    with pytest.raises(ValueError, match="split"):
        ECGTextDataset(ludb_cache, split="validation")


def test_require_label_drops_unlabelled(tmp_path):
    write_cinc_mat(tmp_path / "g1", "A0001", known_signal(1), dx=["426783006"])
    write_cinc_mat(tmp_path / "g1", "A0002", known_signal(2), dx=["10370003"])  # none of the 9 classes
    build_cache(get_adapter("cpsc2018"), tmp_path, tmp_path / "c", progress=False)
    cache = ECGCache(tmp_path / "c")
    assert len(ECGLabelDataset(cache, "cpsc2018")) == 1
    assert len(ECGLabelDataset(cache, "cpsc2018", require_label=False)) == 2


def test_lead_mask_rate_and_zeroing():
    x = torch.ones(4000, 12, 10)
    torch.manual_seed(0)
    y = lead_mask(x, 0.5)
    per_lead = y[..., 0]
    assert torch.all((y == 0).all(-1) | (y == 1).all(-1))  # whole leads, never parts
    assert abs(float((per_lead == 0).float().mean()) - 0.5) < 0.02
    assert torch.equal(lead_mask(x, 0.0), x)


def test_dataloader_batches_masking_and_workers(ludb_cache):
    ds = ECGTextDataset(ludb_cache, lead_mask_prob=0.5)
    torch.manual_seed(1)
    a = next(iter(DataLoader(ds, batch_size=7, num_workers=0)))
    torch.manual_seed(1)
    b = next(iter(DataLoader(ds, batch_size=7, num_workers=0)))
    assert a["ecg"].shape == (7, 12, 5000) and len(a["report"]) == 7
    assert torch.equal(a["ecg"], b["ecg"])  # seeded: reproducible
    plain = next(iter(DataLoader(ECGTextDataset(ludb_cache), batch_size=7)))
    masked = (a["ecg"] == 0).all(-1)
    assert 0 < int(masked.sum()) < masked.numel()
    assert torch.equal(a["ecg"][~masked], plain["ecg"][~masked])  # kept leads untouched

    # two workers loading the same items must not draw the same masks
    same = torch.utils.data.Subset(ds, [0] * 8)
    torch.manual_seed(2)
    batches = list(DataLoader(same, batch_size=4, num_workers=2))
    assert not torch.equal((batches[0]["ecg"] == 0).all(-1), (batches[1]["ecg"] == 0).all(-1))


def test_zscore_cache(tmp_path):
    root = write_ludb(tmp_path / "ludb", 2)
    build_cache(get_adapter("ludb"), root, tmp_path / "c", PreprocessConfig(normalize="zscore"), progress=False)
    x = ECGTextDataset(tmp_path / "c")[0]["ecg"]
    np.testing.assert_allclose(x.mean(-1).numpy(), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(-1, unbiased=False).numpy(), 1, atol=1e-3)


def test_batch_loader_matches_default_collation(ludb_cache):
    ds = ECGLabelDataset(ludb_cache, "ludb")
    default = list(DataLoader(ds, batch_size=3))
    batched = list(batch_loader(ds, batch_size=3))
    assert len(default) == len(batched) == 3
    for a, b in zip(default, batched):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key])
    texts = next(iter(batch_loader(ECGTextDataset(ludb_cache), batch_size=4, shuffle=True, num_workers=1)))
    assert texts["ecg"].shape == (4, 12, 5000) and len(texts["report"]) == 4 and texts["index"].dtype == torch.int64


def test_training_loader_reads_whole_batches_and_reshuffles_each_epoch(ludb_cache):
    """The pretraining DataModule: every pair once per epoch in batches read whole from the cache, equal to
    the dataset's own items, and Lightning's per-epoch set_epoch reaches the sampler (a new order)."""
    from lightning.fabric.utilities.data import _set_sampler_epoch

    from melp.train.datamodule import ECGTextDataModule

    data = ECGTextDataModule(ludb_cache.path, lambda reports: {"n": torch.tensor([len(r) for r in reports])},
                             batch_size=2, val_split=None, seed=3)
    data.setup("fit")
    loader, ds = data.train_dataloader(), data.train_set
    orders = []
    for epoch in range(3):
        _set_sampler_epoch(loader, epoch)
        batches = list(loader)
        assert [len(b["index"]) for b in batches] == [2, 2, 2]  # 7 pairs, the last one dropped
        for b in batches:
            for k, row in enumerate(b["index"].tolist()):
                item = ds[int(np.nonzero(ds.rows == row)[0][0])]
                np.testing.assert_array_equal(b["ecg"][k].numpy(), item["ecg"].numpy())
                assert b["tokens"]["n"][k] == len(item["report"])
        orders.append(torch.cat([b["index"] for b in batches]).tolist())
    assert len(set(map(tuple, orders))) > 1


def test_a_list_of_splits_selects_their_rows(ludb_cache):
    splits = ludb_cache.index["split"].to_numpy()
    ds = ECGTextDataset(ludb_cache, split=["val", "test"])
    assert set(splits[ds.rows]) <= {"val", "test"}
    assert len(ds) == len(ECGTextDataset(ludb_cache, split="val")) + len(ECGTextDataset(ludb_cache, split="test"))
    with pytest.raises(ValueError, match="split must be"):
        ECGTextDataset(ludb_cache, split=["train", "holdout"])
