"""A folder of your own images: layouts, the held-out split, skipped files, decoding, epoch
order, caches and augmentation (tiny images drawn with Pillow at test time)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from tests import image_folders as F
from trainer import image_folder as I, image_pipeline as P
from trainer.errors import UsageError


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
    """DIR/<class>/..., 10 images per class, mixed sizes, modes and formats, plus junk."""
    root = str(tmp_path_factory.mktemp("photos"))
    F.make_classes(root)
    F.write_junk(os.path.join(root, "circle"))
    return root


@pytest.fixture(scope="module")
def scanned(folder) -> I.ImageFolder:
    return I.scan(folder, image_size=16)


def rel(paths, root):
    return sorted(os.path.relpath(p, root) for p in paths)


# ---------------------------------------------------------------------------------- layouts

def test_class_layout_lists_classes_and_holds_out_a_seeded_stratified_test_set(folder, scanned):
    assert scanned.layout == "classes" and scanned.class_names == ["circle", "square", "triangle"]
    assert scanned.validation is None and scanned.image_size == (16, 16)
    for label in range(3):
        assert sum(y == label for _, y in scanned.test) == 2  # 20 % of each class's 10
        assert sum(y == label for _, y in scanned.train) == 8
    assert all(os.path.basename(p).startswith(scanned.class_names[y]) for p, y in scanned.train + scanned.test)
    assert any(os.sep + "more" + os.sep in p for p, _ in scanned.train + scanned.test)  # recursive
    assert scanned.split_description == "test: 20 % of each class held out (seeded), 6 of 30 images"
    again = I.scan(folder, image_size=16)
    assert (again.train, again.test) == (scanned.train, scanned.test)  # the same on every run


def test_hold_out_is_stable_when_files_are_added():
    paths = [f"/c/img_{i:03d}.png" for i in range(50)]
    train, test = I.hold_out(paths, "/c", 0.2)
    assert len(test) == 10 and sorted(train + test) == paths
    _, test_more = I.hold_out(paths + ["/c/img_new.png"], "/c", 0.2)
    assert len(set(test) - set(test_more)) <= 1
    assert I.hold_out(["/c/a.png"], "/c", 0.2) == (["/c/a.png"], [])
    assert len(I.hold_out(["/c/a.png", "/c/b.png"], "/c", 0.2)[1]) == 1


def test_split_layout_with_validation(tmp_path):
    F.make_splits(str(tmp_path), train=4, test=2, validation=2)
    found = I.scan(str(tmp_path))
    assert found.layout == "splits" and found.class_names == list(F.SHAPES)
    assert (len(found.train), len(found.test), len(found.validation)) == (12, 6, 6)
    assert all(f"{os.sep}test{os.sep}" in p for p, _ in found.test)
    assert found.split_description == f"test: {tmp_path / 'test'} (6 images)"
    assert found.image_size is None
    with pytest.raises(UsageError, match="--image-size"):
        found.files("train")
    assert found.files("validation", image_size="12,10").image_shape == (12, 10, 3)


def test_split_layout_without_test_holds_out_from_train(tmp_path):
    F.make_splits(str(tmp_path), train=5, test=0)
    found = I.scan(str(tmp_path), test_fraction=0.4)
    assert (len(found.train), len(found.test)) == (9, 6)
    assert found.split_description.startswith("test: 40 % of each class held out (seeded)")


# ---------------------------------------------------------------------------------- skipped files

def test_corrupt_and_empty_files_are_skipped_and_other_files_ignored(folder, scanned):
    reasons = {os.path.relpath(p, folder): why for p, why in scanned.skipped}
    assert set(reasons) == {os.path.join("circle", n) for n in ("empty.png", "truncated.jpg", "fake.gif")}
    assert reasons[os.path.join("circle", "empty.png")] == "empty file (0 bytes)"
    assert reasons[os.path.join("circle", "fake.gif")] == "not an image (unknown format)"
    listed = {p for p, _ in scanned.train + scanned.test}
    assert not any(p.endswith(("notes.txt", ".DS_Store")) for p in listed)
    assert len(listed) == 30
    summary = scanned.skipped_summary(limit=2)
    assert summary.startswith("Skipped 3 unreadable image file(s): ") and summary.endswith("; and 1 more.")


def test_skipped_list_written_in_full(scanned, tmp_path):
    path = scanned.write_skipped(str(tmp_path))
    lines = open(path, encoding="utf-8").read().splitlines()
    assert [tuple(line.split("\t")) for line in lines] == scanned.skipped


def test_truncated_jpeg_that_pillow_opens_is_caught_by_the_decoder(tmp_path):
    path = str(tmp_path / "t.jpg")
    F.draw("circle", (64, 64), 1).save(path, "JPEG", quality=95)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: int(len(data) * 0.8)])
    Image.open(path).close()  # the header is fine
    channels, reason = I.check_file(path)
    assert channels is None and reason.startswith("cannot be decoded (")


def test_palette_bmp_is_refused(tmp_path):
    path = str(tmp_path / "p.bmp")
    F.draw("circle", (8, 8), 1).convert("P").save(path, "BMP")
    assert I.check_file(path) == (None, "palette BMP, not readable by TensorFlow (would give palette indices)")


def test_progress_is_reported(folder, monkeypatch, tmp_path):
    monkeypatch.setenv(I.CACHE_ENV, str(tmp_path))  # no scan record yet
    seen = []
    I.scan(folder, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (33, 33) and [d for d, _ in seen] == list(range(1, 34))
    seen.clear()  # the second scan: every file known
    I.scan(folder, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(33, 33)]


# ---------------------------------------------------------------------------------- errors

def test_errors_name_the_folder(tmp_path):
    cases = {}
    cases["missing"] = str(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    cases["empty"] = str(tmp_path / "empty")
    F.write_class(str(tmp_path / "one" / "cat"), "circle", 2)
    cases["one"] = str(tmp_path / "one")
    F.write_class(str(tmp_path / "hollow" / "cat"), "circle", 2)
    F.write_junk(str(tmp_path / "hollow" / "dog"))
    os.remove(tmp_path / "hollow" / "dog" / "empty.png")
    os.remove(tmp_path / "hollow" / "dog" / "truncated.jpg")
    os.remove(tmp_path / "hollow" / "dog" / "fake.gif")
    cases["hollow"] = str(tmp_path / "hollow")
    F.write_class(str(tmp_path / "broken" / "cat"), "circle", 2)
    F.write_junk(str(tmp_path / "broken" / "dog"))
    cases["broken"] = str(tmp_path / "broken")
    expected = {
        "missing": f"Image folder not found: {cases['missing']!r}. Expected a directory of class subfolders.",
        "empty": f"No class subfolders in the image folder {cases['empty']!r}. Expected DIR/<class>/<images>",
        "one": f"Only one class subfolder ('cat') in the image folder {cases['one']!r}. Expected at least two",
        "hollow": f"No images in the class folder {os.path.join(cases['hollow'], 'dog')!r}. Expected files "
                  "ending in .jpg, .jpeg, .png, .bmp, .gif (found recursively).",
        "broken": f"No readable images in the class folder {os.path.join(cases['broken'], 'dog')!r}",
    }
    for name, root in cases.items():
        with pytest.raises(UsageError) as info:
            I.scan(root)
        assert info.value.message.startswith(expected[name]), name
        assert "\n" not in info.value.message


def test_too_few_images_to_hold_out_a_test_set(tmp_path):
    F.make_classes(str(tmp_path), {"a": 1, "b": 1})
    with pytest.raises(UsageError) as info:
        I.scan(str(tmp_path))
    assert info.value.message == (
        f"Too few images in the image folder {str(tmp_path)!r} to hold out a test set (2 images, 1 per class "
        "at most). Expected at least two images in a class, or DIR/train/<class> and DIR/test/<class>.")


def test_split_classes_must_agree(tmp_path):
    F.make_splits(str(tmp_path), train=2, test=2)
    F.write_class(str(tmp_path / "test" / "star"), "circle", 2)
    with pytest.raises(UsageError) as info:
        I.scan(str(tmp_path))
    assert info.value.message == (
        f"The classes in {str(tmp_path / 'test')!r} (circle, square, star, triangle) differ from those in "
        f"{str(tmp_path / 'train')!r} (circle, square, triangle). Expected the same class folders.")


@pytest.mark.parametrize("kwargs, message", [
    ({"color_mode": "rgba"}, "Invalid value for option `--color-mode`. Received: 'rgba'. Expected one of rgb, grayscale."),
    ({"image_size": "64,x"}, "Invalid value for option `--image-size`. Received: '64,x'. Expected H or H,W"),
    ({"image_size": 0}, "Invalid value for option `--image-size`. Received: 0."),
])
def test_argument_errors(folder, kwargs, message):
    with pytest.raises(UsageError) as info:
        I.scan(folder, **kwargs)
    assert info.value.message.startswith(message)


def test_image_size_forms():
    assert I.parse_image_size(64) == (64, 64)
    assert I.parse_image_size("64") == (64, 64)
    assert I.parse_image_size("64,48") == (64, 48)
    assert I.parse_image_size((8, 9)) == (8, 9)


# ---------------------------------------------------------------------------------- color mode

def test_color_mode_detection(tmp_path):
    gray = tmp_path / "gray"
    F.make_classes(str(gray), {"a": 3, "b": 3}, modes=("L", "LA"), formats=(("png", "PNG"), ("jpg", "JPEG")))
    assert I.scan(str(gray)).color_mode == "grayscale"
    assert I.scan(str(gray), color_mode="rgb").channels == 3
    Image.new("RGB", (8, 8), (200, 10, 10)).save(gray / "a" / "red.png")
    assert I.scan(str(gray)).color_mode == "rgb"
    assert I.scan(str(gray), color_mode="grayscale").channels == 1


# ---------------------------------------------------------------------------------- decoding

def _odd_images(folder) -> list[str]:
    """One file per decoder case: formats, modes, 16-bit, palette, alpha, animation, CMYK."""
    os.makedirs(folder, exist_ok=True)
    base = F.draw("triangle", (13, 9), 3)
    cases = {"rgb.png": (base, "PNG"), "l.png": (base.convert("L"), "PNG"), "la.png": (base.convert("LA"), "PNG"),
             "rgba.png": (base.convert("RGBA"), "PNG"), "p.png": (base.convert("P"), "PNG"),
             "one.png": (base.convert("1"), "PNG"), "rgb.bmp": (base, "BMP"), "l.bmp": (base.convert("L"), "BMP"),
             "rgba.bmp": (base.convert("RGBA"), "BMP"), "l.jpg": (base.convert("L"), "JPEG"),
             "rgb.jpg": (base, "JPEG"), "cmyk.jpg": (base.convert("CMYK"), "JPEG")}
    paths = []
    for name, (image, fmt) in cases.items():
        paths.append(os.path.join(folder, name))
        image.save(paths[-1], fmt)
    sixteen = (np.asarray(base.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    paths.append(os.path.join(folder, "i16.png"))
    Image.fromarray(sixteen).save(paths[-1])
    paths.append(os.path.join(folder, "anim.gif"))
    base.save(paths[-1], save_all=True, append_images=[F.draw("circle", (13, 9), 4)], duration=50)
    return paths


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("crop", [False, True])
def test_tf_decode_matches_the_numpy_path(tmp_path, channels, crop):
    paths = _odd_images(str(tmp_path))
    checked, skipped = I.check_files(paths)
    assert skipped == [] and len(checked) == len(paths)
    files = I.ImageFiles(paths, [0] * len(paths), (11, 7), channels, crop)
    loaded = files.load(range(len(paths)))
    assert loaded.shape == (len(paths), 11, 7, channels) and loaded.dtype == np.uint8
    for path, image in zip(paths, loaded):
        expected = F.reference_load(path, (11, 7), channels, crop)
        tolerance = 6 if path.endswith(".jpg") else 1  # two JPEG decoders (chroma upsampling)
        diff = np.abs(image.astype(int) - expected.astype(int))
        assert diff.max() <= tolerance, (os.path.basename(path), diff.max())
        assert diff.mean() <= 2, (os.path.basename(path), diff.mean())


def test_a_few_images_are_decoded_once_and_kept_within_a_byte_bound(tmp_path, monkeypatch):
    """The grids decode the same tiles each epoch: ``load`` keeps what it decoded one by one
    (the most recent, up to ``RECENT_BYTES``), the same pixels as the pipeline's."""
    paths = [F.save(F.draw(shape, (20, 20), k), str(tmp_path / f"{shape}.png")) for k, shape in enumerate(F.SHAPES)]
    files = I.ImageFiles(paths, [0, 1, 2], 16, 3)
    first = files.load([2, 0])
    np.testing.assert_array_equal(first, np.stack([x for x, _ in files.decoded([2, 0]).as_numpy_iterator()]))
    first[:] = 0  # the caller's copy
    os.remove(paths[0])
    np.testing.assert_array_equal(files.load([0, 2])[::-1], files.load([2, 0]))  # from memory, not the file
    assert files.load([0]).any()
    with pytest.raises(Exception, match="No such file|NotFound"):
        I.ImageFiles(paths, [0, 1, 2], 16, 3).load([0])  # nothing kept there: read from disk
    monkeypatch.setattr(I, "RECENT_BYTES", 16 * 16 * 3)  # one image: the older goes
    bounded = I.ImageFiles(paths[1:], [1, 2], 16, 3)
    bounded.load([0, 1])
    os.remove(paths[1])
    assert bounded.load([1]).any()  # the most recent is kept
    with pytest.raises(Exception, match="No such file|NotFound"):
        bounded.load([0])


def test_same_size_images_are_not_changed(tmp_path):
    path = str(tmp_path / "x.png")
    pixels = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    np.testing.assert_array_equal(I.ImageFiles([path], [0], (10, 12), 3).load([0])[0], pixels)


# ---------------------------------------------------------------------------------- training order

def _batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def _train(scanned, cache="none", augment=None, seed=5, batch_size=4):
    return P.EpochOrderedFiles(scanned.files("train"), batch_size, seed, cache=cache, augment=augment)


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_epoch_order_is_a_function_of_seed_and_epoch_and_skip_gives_the_rest(scanned, cache):
    a, b = _train(scanned, cache), _train(scanned, cache)
    assert a.steps == 6
    first = _batches(a.dataset(a.steps))
    assert all(x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1 for x, _ in first)
    assert all(y.dtype == np.int32 for _, y in first)
    assert sorted(np.concatenate([y for _, y in first]).tolist()) == sorted(a.files.labels.tolist())
    for left, right in zip(first, _batches(b.dataset(b.steps))):
        np.testing.assert_array_equal(left[0], right[0])
    b.epoch.assign(1)
    second = _batches(b.dataset(b.steps))
    assert any(not np.array_equal(l[1], r[1]) for l, r in zip(first, second))
    b.epoch.assign(0)
    b.skip.assign(4)
    rest = _batches(b.dataset(2))
    assert len(rest) == 2
    for left, right in zip(first[4:], rest):
        np.testing.assert_array_equal(left[0], right[0])
        np.testing.assert_array_equal(left[1], right[1])
    c = _train(scanned, cache, seed=6)
    assert any(not np.array_equal(l[1], r[1]) for l, r in zip(first, _batches(c.dataset(c.steps))))


def test_arrays_and_files_share_the_epoch_order_and_skip(scanned):
    """``EpochOrderedData`` (arrays) and ``EpochOrderedFiles`` share one base: the same seed
    gives the same order of sample indices, and ``skip`` the same rest of an epoch."""
    from trainer.data import EpochOrderedData

    files = _train(scanned, seed=9)
    n = files.size
    arrays = EpochOrderedData(np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1), files.files.labels, 4, 9)
    for data in (files, arrays):
        data.epoch.assign(1)
        data.skip.assign(2)
    order = files.order(1).numpy()[8:]
    seen = np.concatenate([x.ravel() for x, _ in _batches(arrays.dataset(arrays.steps - 2))])
    np.testing.assert_array_equal(np.round(seen * 255).astype(int), order)  # pixel value = index
    labels = np.concatenate([y for _, y in _batches(files.dataset(files.steps - 2))])
    np.testing.assert_array_equal(labels, files.files.labels[order])


def test_epoch_callback_sets_the_epoch(scanned):
    data = _train(scanned)
    data.callback.on_epoch_begin(3)
    assert int(data.epoch.numpy()) == 3


def test_memory_and_streaming_give_the_same_pixels(scanned):
    none, memory = _train(scanned, "none"), _train(scanned, "memory")
    for left, right in zip(_batches(none.dataset(none.steps)), _batches(memory.dataset(memory.steps))):
        np.testing.assert_array_equal(left[0], right[0])


# ---------------------------------------------------------------------------------- augmentation

def test_augmentation_changes_training_batches_only_and_repeats_on_resume(scanned):
    plain = _batches(_train(scanned).dataset(6))
    augmented = _train(scanned, augment="flip,rotate=0.2,zoom,translate,contrast,brightness")
    first = _batches(augmented.dataset(6))
    assert all(np.array_equal(p[1], a[1]) for p, a in zip(plain, first))  # same samples, same order
    assert any(not np.allclose(p[0], a[0]) for p, a in zip(plain, first))
    assert all(0 <= a[0].min() and a[0].max() <= 1 + 1e-6 for a in first)
    resumed = _train(scanned, augment="flip,rotate=0.2,zoom,translate,contrast,brightness")
    resumed.skip.assign(3)
    for left, right in zip(first[3:], _batches(resumed.dataset(3))):
        np.testing.assert_allclose(left[0], right[0], atol=1e-6)
    files = scanned.files("test")
    evaluated = np.concatenate([x for x, _ in _batches(P.eval_pipeline(files, 4))])
    np.testing.assert_allclose(evaluated, files.load(range(len(files))) / 255.0, atol=1e-6)
    labels = np.concatenate([y for _, y in _batches(P.eval_pipeline(files, 4))])
    np.testing.assert_array_equal(labels, files.labels)


def test_parse_augment():
    assert P.parse_augment("flip,rotate=0.1, zoom=0.3") == [("flip", None), ("rotate", 0.1), ("zoom", 0.3)]
    assert P.parse_augment("contrast") == [("contrast", P.AUGMENTATIONS["contrast"])]
    layers = P.build_augmentation("flip,rotate,zoom,translate,contrast,brightness", 1).model.layers
    assert [type(l).__name__ for l in layers] == ["RandomFlip", "RandomRotation", "RandomZoom",
                                                   "RandomTranslation", "RandomContrast", "RandomBrightness"]


@pytest.mark.parametrize("spec, problem", [
    ("flip,blur", "unknown name 'blur'"), ("rotate=abc", "'abc' is not a number"),
    ("zoom=2", "factor 2 for zoom is not in (0, 1]"), ("flip=0.5", "flip takes no factor"), (",", "no augmentation named"),
])
def test_augment_errors(spec, problem):
    with pytest.raises(UsageError) as info:
        P.parse_augment(spec)
    assert info.value.message == (
        f"Invalid value for option `--augment`. Received: {spec!r} ({problem}). Expected a comma-separated "
        "list of name[=factor] with names flip, rotate, zoom, translate, contrast, brightness, "
        "e.g. flip,rotate=0.1,zoom=0.1.")


# ---------------------------------------------------------------------------------- caches

def test_cache_decision():
    gib = 2 ** 30
    shape = (64, 64, 3)  # 12 KiB an image
    assert P.resolve_cache("auto", 10_000, shape, ram=8 * gib, disk=100 * gib).mode == "memory"
    decision = P.resolve_cache("auto", 1_000_000, shape, ram=8 * gib, disk=100 * gib)
    assert decision.mode == "disk" and "more than 25 % of RAM (2,048 MiB)" in decision.reason
    assert P.resolve_cache("auto", 1_000_000, shape, ram=8 * gib, disk=gib).mode == "none"
    assert P.resolve_cache("auto", 10, shape, ram=None, disk=None).mode == "disk"
    assert P.resolve_cache("auto", 10_000, shape, ram=8 * gib, share=0.001).mode == "disk"
    assert P.resolve_cache("none", 10, shape, ram=8 * gib).mode == "none"
    assert P.resolve_cache("memory", 10 ** 9, shape, ram=gib).mode == "memory"
    with pytest.raises(UsageError, match=r"Received: 'ram'. Expected one of auto, memory, disk, none."):
        P.resolve_cache("ram", 10, shape)


def test_cache_folder_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(P.CACHE_ENV, str(tmp_path))
    assert P.cache_root() == str(tmp_path)
    monkeypatch.delenv(P.CACHE_ENV)
    assert P.cache_root() == os.path.join(os.path.expanduser("~"), ".cache", "trainer", "images")


def test_disk_cache_is_filled_once_and_reused(scanned, monkeypatch, tmp_path):
    monkeypatch.setenv(P.CACHE_ENV, str(tmp_path / "cache"))
    first = _train(scanned, "disk")
    assert not first.source.reused and os.path.isfile(os.path.join(first.source.folder, "meta.json"))
    assert os.listdir(tmp_path / "cache") == [os.path.basename(first.source.folder)]
    second = _train(scanned, "disk")
    assert second.source.reused and second.source.folder == first.source.folder
    streamed = _batches(_train(scanned, "none").dataset(6))
    for left, right in zip(streamed, _batches(second.dataset(6))):
        np.testing.assert_array_equal(left[0], right[0])
    evaluated = P.eval_pipeline(scanned.files("train"), 5, cache="disk")
    assert sum(len(y) for _, y in evaluated) == 24
    assert os.listdir(tmp_path / "cache") == [os.path.basename(first.source.folder)]
    other = scanned.files("train", image_size=12)
    assert other.fingerprint() != first.files.fingerprint()  # a different size is a different cache


# ---------------------------------------------------------------------------------- with Keras

def test_keras_fit_on_an_image_folder(scanned):
    """The pipelines plug into ``model.fit`` as ``trainer.run`` uses ``EpochOrderedData``."""
    import keras

    train = _train(scanned, "none", augment="flip")
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(), keras.layers.Dense(3)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(train.dataset(train.steps), validation_data=P.eval_pipeline(scanned.files("test"), 8),
                        epochs=2, verbose=0, shuffle=False, callbacks=[train.callback])
    assert len(history.history["val_loss"]) == 2 and int(train.epoch.numpy()) == 1
    assert model.predict(scanned.files("test").load([0, 1]) / 255.0, verbose=0).shape == (2, 3)


def test_misclassified_class_by_index_or_name():
    from trainer.data import class_index
    from trainer.errors import UsageError

    names = ["cat", "dog", "7"]
    assert [class_index(v, names) for v in (None, 0, "1", "dog", " cat ", "7", 2)] == [None, 0, 1, 1, 0, 2, 2]
    # classes named by digits: a string is a name, an int (config.json, a resume) an index
    assert [class_index(v, ["1", "2", "3"]) for v in ("2", 1, "0")] == [1, 1, 0]
    for bad in ("cow", 3, -1, "-1", "1.5", True):
        with pytest.raises(UsageError) as info:
            class_index(bad, names)
        assert str(info.value) == (f"Invalid value for argument `misclassified_class`. Received: "
                                   f"misclassified_class={bad!r}. Expected a class index 0..2 or a class "
                                   "name: cat, dog, 7.")


def test_prune_cache_keeps_the_most_recent_within_the_size_cap(tmp_path):
    import json
    import time

    now = time.time()
    hours = {"a": 50, "b": 40, "c": 30, "d": 20, "in_use": 60, "fresh": 0.5}  # last used, hours ago

    def make(name, mib=1, ago=0.0, partial=False):
        folder = tmp_path / name
        folder.mkdir()
        if not partial:
            (folder / "meta.json").write_text(json.dumps({"bytes": mib * 2 ** 20}))
        stamp = now - ago * 3600
        os.utime(folder if partial else folder / "meta.json", (stamp, stamp))

    for name, ago in hours.items():
        make(name, ago=ago)
    make("x.partial-1234", ago=30, partial=True)  # a fill a killed run left a day ago
    make("y.partial-5678", ago=0.1, partial=True)  # a fill in progress
    removed = P.prune_cache(str(tmp_path), keep=3, max_bytes=10 * 2 ** 20, protect=[tmp_path / "in_use"], now=now)
    # newest first: fresh (recent), d, c (3 kept), then b, a, in_use (protected)
    assert sorted(os.path.basename(p) for p in removed) == ["a", "b", "x.partial-1234"]
    assert sorted(os.listdir(tmp_path)) == ["c", "d", "fresh", "in_use", "y.partial-5678"]
    removed = P.prune_cache(str(tmp_path), keep=9, max_bytes=2 * 2 ** 20, protect=[], now=now)
    assert [os.path.basename(p) for p in removed] == ["c", "in_use"]  # over 2 MiB: fresh and d fit


def test_a_second_scan_does_not_decode_unchanged_files(tmp_path, monkeypatch):
    """The check results are kept by path, size and mtime: only new or changed files are
    decoded again; a corrupt file stays skipped with its reason; a garbled record is redone."""
    paths = _odd_images(str(tmp_path / "images"))
    bad = str(tmp_path / "images" / "bad.png")
    with open(bad, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\nnot really")
    paths.append(bad)
    record = str(tmp_path / "scans" / "folder.json")
    decoded = []
    check = I.check_file
    monkeypatch.setattr(I, "check_file", lambda p: decoded.append(p) or check(p))
    first = I.check_files(paths, record=record)
    assert sorted(decoded) == sorted(paths) and [p for p, _ in first[1]] == [bad]
    decoded.clear()
    assert I.check_files(paths, record=record) == first and decoded == []
    changed = paths[0]
    Image.open(changed).convert("L").save(changed, Image.open(changed).format)  # new size and mtime
    second = I.check_files(paths[:-2] + [bad], record=record)  # and one file gone
    assert decoded == [changed] and second[1] == first[1] and second[0][changed] == 1
    import json

    stored = json.load(open(record))
    stored["checked_with"][1] = "0.0"  # another TensorFlow: its verdicts are not trusted
    json.dump(stored, open(record, "w"))
    decoded.clear()
    assert I.check_files(paths, record=record)[1] == first[1] and sorted(decoded) == sorted(paths)
    old = str(tmp_path / "scans" / "another-folder.json")  # not scanned for 91 days: removed
    with open(old, "w") as f:
        f.write("{}")
    os.utime(old, (os.path.getmtime(old) - 91 * 86400,) * 2)
    with open(record, "w") as f:
        f.write("{garbled")
    decoded.clear()
    assert I.check_files(paths, record=record)[1] == first[1] and sorted(decoded) == sorted(paths)
    assert not os.path.exists(old) and os.path.exists(record)
