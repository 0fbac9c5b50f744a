"""Datasets: built-in digits and photos, .npz files, image folders and tfds (mocked, no network)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from conftest import tiny_vae

from keras_resvae.datasets import (
    TFDS_DATASETS,
    ArrayBatches,
    DatasetSplits,
    DatasetUnavailableError,
    load_dataset,
    load_digits,
    load_npz,
    load_photos,
    photos,
    tfds_source,
)


def first_batch(dataset):
    return np.asarray(next(iter(dataset)))


def test_digits_are_real_mnist_style_images():
    (x_train, y_train), (x_test, y_test) = load_digits(with_labels=True)
    assert x_train.shape == (1500, 28, 28, 1) and x_test.shape == (297, 28, 28, 1)
    assert x_train.dtype == np.float32 and x_train.min() == 0 and x_train.max() <= 1
    # The 20x20 digit box is centred: a 4-pixel empty border, as in MNIST.
    assert x_train[:, :4].max() == 0 and x_train[:, -4:].max() == 0
    assert set(y_train) == set(range(10)) and len(set(y_test)) == 10
    again, _ = load_digits()
    np.testing.assert_array_equal(again, x_train)  # the split is fixed


@pytest.mark.parametrize("center", [False, True])
def test_digits_pipeline(center):
    data = load_dataset("digits", batch_size=64, center=center)
    batch = first_batch(data.train)
    assert batch.shape == (64, 28, 28, 1) and batch.dtype == np.float32
    assert data.image_shape == (28, 28, 1) and data.num_train == 1500
    low = -1.0 if center else 0.0
    assert batch.min() == pytest.approx(low) and batch.max() <= 1.0
    assert data.output_activation == ("tanh" if center else "sigmoid")
    # Training batches are full; the test set keeps every image.
    assert all(b.shape[0] == 64 for b in data.train)
    assert sum(b.shape[0] for b in data.test) == 297


@pytest.mark.parametrize("cached", [False, True])
def test_first_test_images_finish_the_pass_a_cache_needs(cached):
    # tf.data drops a cache whose first pass stops early, with a warning each run.
    pulled = []

    def images():
        for index in range(100):
            pulled.append(index)
            yield np.full((2, 2, 1), index, "float32")

    spec = tf.TensorSpec((2, 2, 1), tf.float32)
    test = tf.data.Dataset.from_generator(images, output_signature=spec).batch(4)
    data = DatasetSplits(None, test, (2, 2, 1), False, "generated", test_cached=cached)
    first = data.first_test_images(6)
    np.testing.assert_array_equal(first[:, 0, 0, 0], np.arange(6))
    # Read to the end when cached; otherwise no further than the batches needed
    # (and what the generator reads ahead).
    assert (len(pulled) == 100) if cached else (len(pulled) < 50)
    # The built-in sets are cached when they are tf.data pipelines.
    assert load_dataset("digits", pipeline="tf.data").test_cached


@pytest.fixture(scope="module")
def photo_crops():
    return load_photos()


def test_photos_are_fixed_natural_colour_crops(photo_crops):
    x_train, x_test = photo_crops
    assert x_train.shape == (6000, 32, 32, 3) and x_test.shape == (1000, 32, 32, 3)
    assert x_train.dtype == np.float32 and x_train.min() >= 0 and x_train.max() <= 1
    # Photographs, not flat patches or grey: most crops have texture, and colour.
    assert np.median(x_train.std(axis=(1, 2, 3))) > 0.03
    assert np.median(x_test.std(axis=(1, 2, 3))) > 0.03
    assert np.abs(x_train[..., 0] - x_train[..., 2]).mean() > 0.05
    again_train, again_test = load_photos()
    np.testing.assert_array_equal(again_train, x_train)  # the same images on every install
    np.testing.assert_array_equal(again_test, x_test)


def test_photos_split_by_photograph(monkeypatch):
    sources = photos.TRAIN_PHOTOS + photos.TEST_PHOTOS
    assert not set(photos.TRAIN_PHOTOS) & set(photos.TEST_PHOTOS)
    # The stereo pair is one scene: both views on the same side of the split.
    assert {("skimage", "motorcycle_left"), ("skimage", "motorcycle_right")} <= set(
        photos.TRAIN_PHOTOS
    )
    # Each photograph replaced by a flat one whose value names it: every crop
    # then says which photograph it was cut from.
    value = {photo: (index + 1) / (len(sources) + 1) for index, photo in enumerate(sources)}
    monkeypatch.setattr(photos, "_read_photo", lambda *photo: np.full((80, 120, 3), value[photo]))
    x_train, x_test = photos.load_photos()
    train_values = {round(float(v), 6): n for v, n in zip(*np.unique(x_train, return_counts=True))}
    test_values = {round(float(v), 6): n for v, n in zip(*np.unique(x_test, return_counts=True))}
    named = lambda group: {round(float(np.float32(value[p])), 6) for p in group}  # noqa: E731
    assert set(train_values) == named(photos.TRAIN_PHOTOS)
    assert set(test_values) == named(photos.TEST_PHOTOS)
    # Spread evenly over the photographs.
    crops_per_photo = {n // (32 * 32 * 3) for n in train_values.values()}
    assert crops_per_photo == {6000 // len(photos.TRAIN_PHOTOS)}


def test_photos_pipeline():
    data = load_dataset("photos", batch_size=50, center=True, limit=200)
    batch = first_batch(data.train)
    assert batch.shape == (50, 32, 32, 3) and data.image_shape == (32, 32, 3)
    assert batch.min() >= -1.0 and batch.max() <= 1.0 and batch.min() < -0.5
    assert data.output_activation == "tanh" and data.num_test == 1000


def test_pipelines_train_with_fit():
    data = load_dataset("digits", batch_size=32, limit=128)
    vae = tiny_vae(image_shape=data.image_shape)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = vae.fit(data.train, validation_data=data.test, epochs=2, verbose=0, shuffle=False)
    assert np.isfinite(history.history["val_loss"][-1])


def test_npz_with_train_and_test_arrays(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (40, 12, 10), dtype=np.uint8),
        x_test=rng.integers(0, 256, (8, 12, 10), dtype=np.uint8),
    )
    x_train, x_test = load_npz(path)
    assert x_train.shape == (40, 12, 10, 1) and x_test.shape == (8, 12, 10, 1)
    assert 0 <= x_train.min() and x_train.max() <= 1
    data = load_dataset(str(path), batch_size=16)
    assert data.image_shape == (12, 10, 1) and first_batch(data.train).shape == (16, 12, 10, 1)


def test_npz_with_one_array_is_split(tmp_path):
    images = np.random.default_rng(0).uniform(size=(50, 9, 9, 3)).astype("float32")
    path = tmp_path / "images.npz"
    np.savez(path, images=images)
    x_train, x_test = load_npz(path, test_fraction=0.2)
    assert len(x_train) == 40 and len(x_test) == 10
    joined = np.concatenate([x_train, x_test])
    np.testing.assert_array_equal(np.sort(joined.ravel()), np.sort(images.ravel()))


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(x_train=np.full((4, 8, 8), 3.0)), r"floats in \[0, 1\].*divide by 255"),
        (dict(x_train=np.zeros((4, 8))), "shape"),
        (dict(a=np.zeros((4, 8, 8)), b=np.zeros((4, 8, 8))), "x_train"),
        (dict(x_train=np.full((4, 8, 8), np.nan)), "NaN"),
    ],
    ids=["range", "shape", "ambiguous", "nan"],
)
def test_bad_npz_files_give_clear_errors(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message):
        load_dataset(str(path))


def test_corrupt_npz_file(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"this is not a zip archive")
    with pytest.raises(ValueError, match="not a .npz archive"):
        load_npz(path)


def write_images(folder, count, size=(20, 16)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        if index % 2:
            (folder / f"im{index}.jpg").write_bytes(tf.io.encode_jpeg(image).numpy())
        else:
            (folder / f"sub{index}.png").write_bytes(tf.io.encode_png(image).numpy())


def test_image_folder(tmp_path):
    write_images(tmp_path / "images" / "nested", 10)
    data = load_dataset(str(tmp_path / "images"), batch_size=4, image_size=16, test_fraction=0.2)
    batch = first_batch(data.train)
    assert batch.shape == (4, 16, 16, 3) and 0 <= batch.min() and batch.max() <= 1
    assert data.num_train == 8 and data.num_test == 2
    grey = load_dataset(str(tmp_path / "images"), batch_size=4, image_size=8, channels=1)
    assert first_batch(grey.train).shape == (4, 8, 8, 1)


def test_bad_image_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        load_dataset(str(tmp_path / "empty"))
    write_images(tmp_path / "mixed", 4)
    (tmp_path / "mixed" / "broken.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="not valid images.*broken.png"):
        load_dataset(str(tmp_path / "mixed"))


def test_a_truncated_jpeg_is_named_when_the_pipeline_reaches_it(tmp_path):
    write_images(tmp_path / "photos", 8)
    good = (tmp_path / "photos" / "im1.jpg").read_bytes()
    (tmp_path / "photos" / "zz_cut.jpg").write_bytes(good[: len(good) // 3])
    data = load_dataset(str(tmp_path / "photos"), batch_size=2, image_size=8, test_fraction=0.5)
    with pytest.raises(ValueError, match=r"zz_cut\.jpg: cannot decode this image"):
        with data.reading_files():
            for split in (data.train, data.test):
                for _ in split:
                    pass


@pytest.mark.parametrize("name", sorted(TFDS_DATASETS))
def test_named_tfds_datasets(name):
    with tfds.testing.mock_data(num_examples=12):
        data = load_dataset(name, batch_size=4)
        batch = first_batch(data.train)
    assert batch.shape == (4, *TFDS_DATASETS[name].image_shape)
    assert batch.dtype == np.float32 and 0 <= batch.min() and batch.max() <= 1


def test_missing_dataset_offline_fails_fast_and_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_source, "_can_reach_download_host", lambda timeout=3.0: False)
    with pytest.raises(DatasetUnavailableError) as error:
        load_dataset("cifar10", data_dir=str(tmp_path))
    message = str(error.value)
    assert "'cifar10'" in message and str(tmp_path) in message and "tfds build cifar10" in message


def test_unknown_dataset_and_small_datasets():
    with pytest.raises(ValueError, match=r"Unknown dataset 'cifar11'.*'digits'"):
        load_dataset("cifar11")
    with pytest.raises(ValueError, match="fewer than batch_size=64"):
        load_dataset("digits", batch_size=64, limit=10)


def test_array_batches_shuffle_each_epoch_from_the_seed_alone():
    images = np.arange(10, dtype="uint8").reshape(10, 1, 1, 1)
    train = ArrayBatches(images, 4, seed=3)
    assert len(train) == 2 and [len(batch) for batch in train] == [4, 4]  # full batches only
    train.on_epoch_end()  # iterating is a look, not an epoch of fit: still epoch 0
    assert train.epoch == 0
    epochs = []
    for _ in range(3):
        batches = [train[index] for index in range(len(train))]  # as Keras's fit reads
        assert [len(batch) for batch in batches] == [4, 4]
        epochs.append(np.concatenate(batches).ravel())
        train.on_epoch_end()  # as Keras's fit calls it
    assert len({tuple(epoch) for epoch in epochs}) == 3  # a new order each epoch
    for epoch in epochs:  # each image at most once per epoch
        assert len(set(epoch)) == 8
    # A resumed run at epoch 2 reads what an uninterrupted run read.
    resumed = ArrayBatches(images, 4, seed=3)
    resumed.start_epoch(2)
    np.testing.assert_array_equal(np.concatenate(list(resumed)).ravel(), epochs[2])
    # uint8 pixels become float32 in [0, 1].
    assert epochs[0].dtype == np.float32 and set(epochs[0] * 255).issubset(range(10))


def test_array_batches_in_order_keep_every_image_on_the_right_scale():
    images = np.array([0, 51, 255, 102, 204], "uint8").reshape(5, 1, 1, 1)
    test = ArrayBatches(images, 2, center=True)
    batches = list(test)
    assert [len(batch) for batch in batches] == [2, 2, 1]
    np.testing.assert_allclose(np.concatenate(batches).ravel(), images.ravel() / 127.5 - 1)
    assert test.pixel_range() == (-1.0, 1.0) and test.image_shape == (1, 1, 1)
    with pytest.raises(IndexError):
        test[3]
    # Data-parallel validation: every batch splits over the devices, and only the
    # end loses images, fewer than there are devices.
    assert [len(batch) for batch in test.split_over(2)] == [2, 2]
    np.testing.assert_array_equal(
        np.concatenate(list(test.split_over(2))), np.concatenate(batches[:2])
    )
    assert [len(batch) for batch in ArrayBatches(images, 4).split_over(2)] == [4]
    assert [len(batch) for batch in ArrayBatches(images[:3], 2).split_over(1)] == [2, 1]
    with pytest.raises(ValueError, match="unshuffled"):
        ArrayBatches(images, 2, seed=0).split_over(2)
    # Each data-parallel process gets its share of every batch; together, the batch.
    shares = [list(ArrayBatches(images, 4, center=True).sharded(rank, 2)) for rank in (0, 1)]
    np.testing.assert_allclose(shares[0][0].ravel(), images[[0, 2], 0, 0, 0] / 127.5 - 1, 1e-6)
    np.testing.assert_allclose(shares[1][0].ravel(), images[[1, 3], 0, 0, 0] / 127.5 - 1, 1e-6)
    with pytest.raises(ValueError, match="does not split evenly over 3 processes"):
        test.sharded(0, 3)


def test_the_numpy_pipeline_holds_the_tf_data_pipeline_s_images():
    numpy = load_dataset("digits", batch_size=64, center=True, limit=200, pipeline="numpy")
    graph = load_dataset("digits", batch_size=64, center=True, limit=200, pipeline="tf.data")
    assert isinstance(numpy.train, ArrayBatches) and isinstance(numpy.test, ArrayBatches)
    assert (numpy.image_shape, numpy.num_train, numpy.num_test) == (
        graph.image_shape,
        graph.num_train,
        graph.num_test,
    )
    np.testing.assert_array_equal(
        np.concatenate(list(numpy.test)), np.concatenate([np.asarray(b) for b in graph.test])
    )
    # Both give data-parallel validation the same images, in batches that split
    # over 4 devices: of the 297 test digits, 296 (64 x 4 + 40).
    for data in (numpy, graph):
        sizes = [len(np.asarray(batch)) for batch in data.test_split_over(4)]
        assert sizes == [64, 64, 64, 64, 40], sizes
    np.testing.assert_array_equal(
        np.concatenate(list(numpy.test_split_over(4))),
        np.concatenate([np.asarray(b) for b in graph.test_split_over(4)]),
    )
    # The same training images (the first 200), in another shuffled order.
    first_epoch = np.concatenate(list(numpy.train))
    assert first_epoch.shape == (192, 28, 28, 1)  # 3 full batches of 64
    first_200 = {image.tobytes() for image in load_digits()[0][:200] * 2 - 1}
    assert len({image.tobytes() for image in first_epoch} - first_200) == 0
    # "auto": NumPy batches off TensorFlow, so a run there never imports it.
    auto = load_dataset("digits", batch_size=64, limit=200)
    assert isinstance(auto.train, ArrayBatches) == (keras.backend.backend() != "tensorflow")
    with pytest.raises(ValueError, match=r"Unknown pipeline 'arrow': expected one of"):
        load_dataset("digits", pipeline="arrow")


def test_fit_checks_the_pixels_numpy_batches_hold():
    vae = tiny_vae(image_shape=(16, 16, 1))
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    wrong_scale = ArrayBatches(np.full((8, 16, 16, 1), 200.0, "float32"), 4)
    with pytest.raises(ValueError, match="looks like 0-255 pixels: scale it with x / 255"):
        vae.fit(wrong_scale, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"This VAE takes images of shape \(batch, 16, 16, 1\)"):
        vae.fit(ArrayBatches(np.zeros((8, 8, 8, 1), "float32"), 4), epochs=1, verbose=0)
