"""Checking what a VAE is given: arrays whole, tf.data batch by batch, one clear message."""

import keras
import numpy as np
import pytest
from conftest import blob_images, tiny_vae

from keras_resvae import inputs


def compiled(vae):
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    return vae


@pytest.mark.parametrize(
    "transform, activation, message",
    [
        (lambda x: (x * 255).astype("uint8"), "sigmoid", r"uint8 integers.*x / 255"),
        (lambda x: x * 255, "sigmoid", r"in \[0, 253.8\].*0-255 pixels.*x / 255"),
        (lambda x: x * 2 - 1, "sigmoid", r"centred to \[-1, 1\].*output_activation='tanh'"),
        (lambda x: x * 255, "tanh", r"0-255 pixels.*x / 127.5 - 1"),
        (lambda x: x + 0.5, "sigmoid", r"\[0.5, 1.495\].*models pixels in \[0, 1\].*np.clip"),
    ],
    ids=["uint8", "0-255", "centred-for-sigmoid", "0-255-for-tanh", "overshoot"],
)
def test_arrays_on_the_wrong_scale_name_the_fix(transform, activation, message):
    images = transform(blob_images(4))
    with pytest.raises(ValueError, match=message):
        inputs.check_array(images, (16, 16, 1), activation)


def test_arrays_in_range_pass_nans_and_slight_overshoot_included():
    images = blob_images(4)
    inputs.check_array(images, (16, 16, 1), "sigmoid")
    inputs.check_array(images * 2 - 1, (16, 16, 1), "tanh")
    images[0, 0, 0, 0] = np.nan  # the training step skips such a batch
    images[1, 0, 0, 0] = 1.005  # within 1% of the range
    inputs.check_array(images, (16, 16, 1), "sigmoid")


@pytest.mark.parametrize(
    "shape, message",
    [
        ((4, 16, 16), r"Received: shape \(4, 16, 16\).*x\[\.\.\., None\]"),
        ((4, 28, 28, 1), r"Received: shape \(4, 28, 28, 1\).*image_shape=\(28, 28, 1\)"),
        ((16, 16, 1), r"Received: shape \(16, 16, 1\)"),
    ],
)
def test_wrong_shapes_are_described(shape, message):
    with pytest.raises(ValueError, match=r"shape \(batch, 16, 16, 1\)\. " + message):
        inputs.check_array(np.zeros(shape, "float32"), (16, 16, 1), "sigmoid")


def test_a_dict_of_images_must_use_the_encoder_input_name():
    images = blob_images(2)
    assert inputs.unwrap_images({"images": images}, ["images"]) is images
    with pytest.raises(ValueError, match=r"single key 'images'.*\['pixels'\]"):
        inputs.unwrap_images({"pixels": images}, ["images"])


# ------------------------------------------------------------ through the VAE


@pytest.mark.parametrize("method", ["fit", "evaluate", "predict", "encode", "reconstruct"])
def test_every_entry_point_refuses_0_255_arrays(method):
    vae = compiled(tiny_vae())
    with pytest.raises(ValueError, match="0-255 pixels"):
        getattr(vae, method)(blob_images(8) * 255)


def test_a_tanh_model_refuses_uint8_and_a_sigmoid_model_refuses_centred_data():
    with pytest.raises(ValueError, match=r"uint8 integers.*x / 127.5 - 1"):
        compiled(tiny_vae(output_activation="tanh")).fit(
            (blob_images(8) * 255).astype("uint8"), verbose=0
        )
    with pytest.raises(ValueError, match="--center"):
        compiled(tiny_vae()).fit(blob_images(8) * 2 - 1, verbose=0)


def test_validation_data_is_checked_too():
    vae = compiled(tiny_vae())
    with pytest.raises(ValueError, match="0-255"):
        vae.fit(blob_images(8), validation_data=blob_images(8) * 255, verbose=0)
    with pytest.raises(ValueError, match="0-255"):
        vae.fit(blob_images(8), validation_data=(blob_images(8) * 255,), verbose=0)


def test_a_tf_data_pipeline_on_the_wrong_scale_fails_with_the_same_message():
    tf = pytest.importorskip("tensorflow")
    vae = compiled(tiny_vae())
    good = blob_images(32)
    # The first batch is in range, the third is not: only the pipeline check can see it.
    bad = np.concatenate([good[:16], good[16:] * 255])
    dataset = tf.data.Dataset.from_tensor_slices(bad).batch(8)
    with pytest.raises(
        ValueError, match=r"dataset's images have pixel values in \[0, 25\d.*0-255 pixels"
    ):
        vae.fit(dataset, epochs=1, verbose=0, shuffle=False)
    with pytest.raises(ValueError, match="0-255 pixels"):
        vae.evaluate(dataset, verbose=0)
    with pytest.raises(ValueError, match="uint8"):
        vae.fit(tf.data.Dataset.from_tensor_slices((good * 255).astype("uint8")).batch(8))


def test_a_tf_data_pipeline_of_unknown_shape_gets_the_package_message():
    tf = pytest.importorskip("tensorflow")
    vae = compiled(tiny_vae())

    def generator(shape):
        def images():
            for _ in range(4):
                yield np.full(shape, 0.5, "float32")

        # Unknown rank and sizes, and unknown length: read two batches per epoch.
        return tf.data.Dataset.from_generator(
            images, output_signature=tf.TensorSpec(None, tf.float32)
        ).repeat()

    history = vae.fit(
        generator((8, 16, 16, 1)), epochs=1, steps_per_epoch=2, verbose=0, shuffle=False
    )
    assert np.isfinite(history.history["loss"][0])
    for shape in [(8, 28, 28, 1), (8, 16, 16)]:
        with pytest.raises(
            ValueError, match=r"This VAE takes images of shape \(batch, 16, 16, 1\)"
        ):
            vae.fit(generator(shape), epochs=1, steps_per_epoch=2, verbose=0, shuffle=False)
    ranked = tf.data.Dataset.from_tensor_slices(np.zeros((8, 16, 16), "float32")).batch(4)
    with pytest.raises(ValueError, match=r"Received: shape \(None, 16, 16\)"):
        vae.fit(ranked, epochs=1, verbose=0, shuffle=False)


def test_images_may_come_as_a_dict_keyed_by_the_encoder_input():
    vae = compiled(tiny_vae())
    images = blob_images(16)
    history = vae.fit({"images": images}, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    np.testing.assert_allclose(
        vae.predict({"images": images[:4]}, verbose=0), vae.predict(images[:4], verbose=0)
    )
    assert vae.evaluate({"images": images}, verbose=0, return_dict=True)["loss"] < 1e6
    with pytest.raises(ValueError, match="single key 'images'"):
        vae.fit({"x": images}, verbose=0)
