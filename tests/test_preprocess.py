import numpy as np
import pytest

from melp.data.preprocess import PreprocessConfig, normalize, prepare_signal, preprocess, preprocess_batch


def test_resample_and_pad_short_record():
    cfg = PreprocessConfig(fs=500, seconds=10)
    t = np.arange(250 * 6) / 250  # 6 s at 250 Hz
    x = np.tile(np.sin(2 * np.pi * 5 * t), (12, 1))
    out = prepare_signal(x, 250, cfg)
    assert out.shape == (1, 12, 5000) and out.dtype == np.float32
    assert np.all(out[0, :, 3100:] == 0)  # padded tail
    ref = np.sin(2 * np.pi * 5 * np.arange(3000) / 500)
    assert np.max(np.abs(out[0, 0, 100:2900] - ref[100:2900])) < 1e-2


def test_all_windows_of_a_long_record():
    cfg = PreprocessConfig(windows="all", normalize="none")
    x = np.arange(12 * 12500, dtype=np.float32).reshape(12, 12500)
    out = preprocess(x, 500, cfg)
    assert out.shape == (2, 12, 5000)
    np.testing.assert_array_equal(out[1, 3], x[3, 5000:10000])


def test_normalize_modes():
    x = np.random.default_rng(0).normal(size=(2, 12, 100)).astype(np.float32) * 3 + 1
    mm = normalize(x, "minmax")
    assert np.allclose(mm.min(axis=(1, 2)), 0) and np.allclose(mm.max(axis=(1, 2)), 1)
    z = normalize(x, "zscore")
    assert np.allclose(z.mean(-1), 0, atol=1e-5) and np.allclose(z.std(-1), 1, atol=1e-4)
    with pytest.raises(ValueError):
        PreprocessConfig(normalize="bogus")


def test_config_round_trip(tmp_path):
    cfg = PreprocessConfig(fs=250, bandpass=(0.5, 40), normalize="zscore")
    cfg.save(tmp_path / "p.json")
    assert PreprocessConfig.load(tmp_path / "p.json") == cfg


def test_bandpass_removes_baseline():
    cfg = PreprocessConfig(bandpass=(0.5, 100), normalize="none")
    t = np.arange(5000) / 500
    x = np.tile(2.0 + 0.5 * np.sin(2 * np.pi * 10 * t), (12, 1))
    out = prepare_signal(x, 500, cfg)[0]
    assert abs(out[:, 500:4500].mean()) < 0.05


def test_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="Nyquist"):
        PreprocessConfig(fs=100, bandpass=(60, 200))
    with pytest.raises(ValueError, match="unknown preprocessing settings"):
        PreprocessConfig.from_dict({"fs": 500, "window": 10})
    with pytest.raises(ValueError, match="windows"):
        PreprocessConfig(windows="every")


@pytest.mark.parametrize("cfg", [PreprocessConfig(), PreprocessConfig(fs=100, bandpass=(0.5, 40.0), windows="all"),
                                 PreprocessConfig(fs=250, seconds=4.0, normalize="zscore", windows="all")])
def test_a_batch_is_preprocessed_as_each_record_alone(cfg):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 12, 5000)).astype(np.float32)
    x[2, 3, 100] = np.nan  # replaced by 0 in both paths
    batch = preprocess_batch(x, 500, cfg)
    assert batch.shape[:2] == (5, len(preprocess(x[0], 500, cfg)))
    for i in range(5):
        np.testing.assert_allclose(batch[i], preprocess(x[i], 500, cfg), rtol=0, atol=1e-6)
