"""Model folders are complete or absent: atomic replacement, and a manifest that ``melp.load`` checks."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

import melp
import melp.models.melp as melp_module
from melp.atomic import MANIFEST_FILE, atomic_write
from modelfixtures import small_config, small_text_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Two differently initialised small models saved as folders ``a`` and ``b``."""
    root = tmp_path_factory.mktemp("folders")
    text = small_text_model(root / "text")
    for name, seed in (("a", 0), ("b", 1)):
        torch.manual_seed(seed)
        melp.MELP(small_config(text)).save_pretrained(root / name)
    return root


def copy_of(saved, name, tmp_path):
    return shutil.copytree(saved / name, tmp_path / name)


def test_manifest_lists_every_file_and_nothing_is_left_beside(saved):
    listed = json.loads((saved / "a" / MANIFEST_FILE).read_text())["files"]
    assert {"config.json", "model.safetensors", "preprocess.json", "text_model/model.safetensors"} <= set(listed)
    assert all(len(e["sha256"]) == 64 and e["size"] > 0 for e in listed.values())
    assert not [p for p in saved.iterdir() if p.name.startswith(".")]


def test_replacing_a_folder_swaps_it_whole(saved, tmp_path):
    a = copy_of(saved, "a", tmp_path)
    model_b = melp.load(saved / "b")
    model_b.save_pretrained(a)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    for k, v in melp.load(a).state_dict().items():
        torch.testing.assert_close(v, model_b.state_dict()[k], rtol=0, atol=0)


def test_a_failed_write_leaves_the_old_folder(saved, tmp_path, monkeypatch):
    a = copy_of(saved, "a", tmp_path)
    model = melp.load(saved / "b")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(melp_module, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(a)
    melp.load(a)  # the old folder, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_a_flipped_byte_is_named(saved, tmp_path):
    a = copy_of(saved, "a", tmp_path)
    weights = a / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model.safetensors does not match"):
        melp.load(a)


def test_a_truncated_file_is_named(saved, tmp_path):
    a = copy_of(saved, "a", tmp_path)
    weights = a / "text_model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match="text_model/model.safetensors does not match"):
        melp.load(a)


def test_a_mixed_folder_is_refused(saved, tmp_path):
    """The old ECG weights with the new text tower (what an in-place write killed half-way left)."""
    a = copy_of(saved, "a", tmp_path)
    shutil.copy(saved / "b" / "text_model" / "model.safetensors", a / "text_model" / "model.safetensors")
    with pytest.raises(ValueError, match="text_model/model.safetensors does not match"):
        melp.load(a)


def test_missing_manifest_and_unlisted_files_are_refused(saved, tmp_path):
    a = copy_of(saved, "a", tmp_path)
    (a / "stray.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="stray.bin is not in manifest.json"):
        melp.load(a)
    (a / "stray.bin").unlink()
    (a / MANIFEST_FILE).unlink()
    with pytest.raises(ValueError, match="manifest.json is missing"):
        melp.load(a)


def test_atomic_write_keeps_the_old_file_on_error(tmp_path):
    dest = tmp_path / "f.txt"
    dest.write_text("old")

    def fails(path):
        path.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(dest, fails)
    assert dest.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]
    atomic_write(dest, lambda path: path.write_text("new"))
    assert dest.read_text() == "new"


def test_a_dead_writers_leftovers_are_tidied_and_an_old_folder_put_back(saved, tmp_path):
    """What kill -9 leaves: a half-written temporary, and (between the two renames) the old folder aside."""
    import subprocess

    from melp.atomic import _prefix, _tidy

    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    dest = tmp_path / "m"
    shutil.copytree(saved / "a", tmp_path / f"{_prefix(dest, 'old', dead.pid)}x")
    (tmp_path / f"{_prefix(dest, 'tmp', dead.pid)}y").mkdir()
    (tmp_path / f"{_prefix(dest, 'tmp')}z").mkdir()  # a live writer's (this process): left alone
    _tidy(dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m", f"{_prefix(dest, 'tmp')}z"])
    melp.load(dest)  # the old folder, back in place
