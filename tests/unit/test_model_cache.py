"""The cache of models trained first (kdjax/weights/model_cache.py): what is part of a model's identity, where the cache
lives (never the user's cache in tests: conftest points KDJAX_CACHE at a temporary folder), and concurrent publishers:
exactly one wins, atomically."""

import os
import threading
import time
from types import SimpleNamespace

import pytest

from conftest import load_config, tiny


def _identity(config):
    from kdjax.weights import model_cache

    info = SimpleNamespace(num_classes=10, image_shape=(28, 28, 1))
    return model_cache.identity(config, "Teacher", info, _Source(256))


class _Source(list):
    description = "idx fashion_mnist train"

    def __init__(self, n):
        super().__init__(range(n))


def test_tests_never_use_the_users_cache():
    from kdjax.weights import model_cache

    assert model_cache.cache_root() == os.environ["KDJAX_CACHE"]
    assert not model_cache.cache_root().startswith(os.path.expanduser("~/.cache"))


def test_cache_location(monkeypatch, tmp_path):
    from kdjax.weights import model_cache

    monkeypatch.delenv("KDJAX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert model_cache.cache_root() == str(tmp_path / "xdg" / "kdjax")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert model_cache.cache_root() == os.path.join(os.path.expanduser("~"), ".cache", "kdjax")
    for off in ("off", "0", "none", ""):
        monkeypatch.setenv("KDJAX_CACHE", off)
        assert model_cache.cache_root() is None


@pytest.mark.parametrize("change", [
    lambda c: setattr(c, "seed", 1),
    lambda c: setattr(c.data, "train_limit", 512),
    lambda c: setattr(c.pretrain, "epochs", 3.0),
    lambda c: setattr(c.pretrain.optim, "lr", 0.05),
    lambda c: setattr(c, "precision", "bfloat16"),
    lambda c: setattr(c.data, "augment", "none"),
    lambda c: c.models.Teacher.kwargs.update(stem_stride=1),
    lambda c: setattr(c.models.Teacher, "arch", "convnet_student"),
], ids=["seed", "train_limit", "pretrain_epochs", "pretrain_lr", "precision", "augment", "kwargs", "arch"])
def test_identity_changes_with_what_decides_the_weights(change):
    from kdjax.weights.model_cache import key_of

    config = tiny(load_config("configs/kd.py"))
    before = key_of(_identity(config))
    with config.unlocked():
        change(config)
    assert key_of(_identity(config)) != before


def test_identity_ignores_what_does_not(tmp_path):
    from kdjax.weights.model_cache import key_of

    a, b = tiny(load_config("configs/kd.py")), tiny(load_config("configs/dkd.py"))
    with b.unlocked():  # another distillation recipe, budget and logging: the same teacher
        b.train.epochs, b.train.log_every_steps, b.optim.lr = 9.0, 3, 0.01
        b.models.Teacher.capture = ("blocks[2]",)
    assert key_of(_identity(a)) == key_of(_identity(b))


def test_concurrent_publishers_one_wins_atomically(tmp_path, monkeypatch):
    """Eight runs finishing the same model at once: one rename wins, the entry is complete, nothing half-written
    or left over; every copy is slowed so that all of them are in flight together."""
    import shutil

    from kdjax.weights import model_cache
    from kdjax.weights.export_dir import is_export_dir

    monkeypatch.setenv("KDJAX_CACHE", str(tmp_path / "cache"))
    config = tiny(load_config("configs/kd.py"))
    info = SimpleNamespace(num_classes=10, image_shape=(28, 28, 1))
    exports = []
    for i in range(8):
        d = tmp_path / f"export{i}"
        (d / "variables").mkdir(parents=True)
        (d / "variables" / "data").write_text(str(i))
        (d / "spec.json").write_text("{}")
        exports.append(str(d))
    real_copytree = shutil.copytree

    def slow_copytree(*args, **kwargs):
        out = real_copytree(*args, **kwargs)
        time.sleep(0.3)
        return out

    monkeypatch.setattr(model_cache.shutil, "copytree", slow_copytree)
    start, results = threading.Barrier(8), [None] * 8

    def publish(i):
        start.wait()
        results[i] = model_cache.publish(config, "Teacher", info, _Source(256), exports[i])

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r]
    assert len(winners) == 1
    path = winners[0]
    assert is_export_dir(path) and os.path.isfile(os.path.join(path, model_cache.IDENTITY_FILE))
    winner = results.index(path)
    assert open(os.path.join(path, "variables", "data")).read() == str(winner)  # one run's copy, whole
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]  # no temporary copies left
