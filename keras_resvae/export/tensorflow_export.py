"""Writes SavedModels and ONNX files from a VAE on the TensorFlow backend.

Both formats trace the same `endpoint_functions` with a dynamic batch
dimension. Only this module imports TensorFlow (and tf2onnx) for export.
"""

import os

import keras

from keras_resvae.export.endpoints import (
    DEFAULT_ENDPOINT,
    ENDPOINTS,
    endpoint_functions,
    input_shape,
)


def _check_backend():
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "tensorflow_export traces TensorFlow graphs and needs KERAS_BACKEND=tensorflow; "
            "keras_resvae.export.export_vae switches backends for you."
        )


def _input_spec(vae, endpoint):
    import tensorflow as tf

    return tf.TensorSpec(input_shape(vae, endpoint), tf.float32, name=ENDPOINTS[endpoint][0])


def write_saved_model(vae, folder):
    """Writes a SavedModel with the endpoints as named signatures.

    Signatures: `encode`, `decode`, `reconstruct`, `sample`, and
    `serving_default` (= `reconstruct`). The model's variables are tracked, so
    the SavedModel needs neither Keras nor keras_resvae to load.

    Example:
    >>> write_saved_model(vae, "exports/vae")
    >>> tf.saved_model.load("exports/vae").signatures["sample"](noise=noise)["samples"]
    """
    _check_backend()
    archive = keras.export.ExportArchive()
    archive.track(vae)
    functions = endpoint_functions(vae)
    for name in ENDPOINTS:
        archive.add_endpoint(name, functions[name], [_input_spec(vae, name)])
    archive.add_endpoint(
        "serving_default", functions[DEFAULT_ENDPOINT], [_input_spec(vae, DEFAULT_ENDPOINT)]
    )
    archive.write_out(folder, verbose=False)


def write_onnx(vae, folder, opset=None):
    """Writes one ONNX file per endpoint, `<folder>/<endpoint>.onnx`.

    An ONNX graph has one set of inputs and outputs, so each endpoint is its own
    file; the input and output names are those of the SavedModel signatures, and
    the first dimension is named `batch` (dynamic).

    Example:
    >>> write_onnx(vae, "exports/vae-onnx")
    >>> onnxruntime.InferenceSession("exports/vae-onnx/sample.onnx").run(None, {"noise": noise})
    """
    _check_backend()
    import tensorflow as tf

    try:
        import onnx
        import tf2onnx
    except ImportError as error:
        raise ValueError(
            f"ONNX export needs tf2onnx and onnx ({error.name} is missing): "
            "pip install 'keras-resvae[export]'."
        ) from None
    functions = endpoint_functions(vae)
    for name in ENDPOINTS:
        spec = _input_spec(vae, name)
        model_proto, _ = tf2onnx.convert.from_function(
            tf.function(functions[name]), input_signature=[spec], opset=opset
        )
        _name_batch_dimension(model_proto)
        onnx.save(model_proto, os.path.join(folder, f"{name}.onnx"))


def _name_batch_dimension(model_proto):
    # tf2onnx calls the dynamic batch dimension "unk__123"; users read "batch".
    for value in [*model_proto.graph.input, *model_proto.graph.output]:
        first = value.type.tensor_type.shape.dim[0]
        if not first.HasField("dim_value"):
            first.dim_param = "batch"
