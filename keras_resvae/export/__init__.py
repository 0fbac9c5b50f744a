"""Export a trained VAE for inference: SavedModel signatures or ONNX files.

Example:
>>> from keras_resvae.export import export_vae
>>> export_vae("runs/quickstart", "exports/quickstart")  # SavedModel
>>> export_vae("runs/quickstart", "exports/quickstart-onnx", "onnx")
"""

from keras_resvae.export.endpoints import (
    DEFAULT_ENDPOINT,
    ENDPOINTS,
    METADATA_FILE,
    endpoint_functions,
    export_metadata,
)
from keras_resvae.export.exporter import EXPORT_FORMATS, check_export_format, export_vae

__all__ = [
    "DEFAULT_ENDPOINT",
    "ENDPOINTS",
    "EXPORT_FORMATS",
    "METADATA_FILE",
    "check_export_format",
    "endpoint_functions",
    "export_metadata",
    "export_vae",
]
