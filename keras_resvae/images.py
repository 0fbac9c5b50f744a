"""Image grids and PNG files."""

import numpy as np

from keras_resvae.atomic import atomic_path


def image_grid(images, columns=8, padding=2, pad_value=1.0):
    """Tiles `(n, H, W, C)` images in [0, 1] into one `(rows*H', columns*W', C)` uint8 grid.

    Example:
    >>> grid = image_grid(vae.sample(64, seed=0), columns=8)
    """
    images = np.clip(np.asarray(images, dtype="float32"), 0.0, 1.0)
    if images.ndim != 4:
        raise ValueError(f"Expected images of shape (n, H, W, C). Received: {images.shape}")
    n, height, width, channels = images.shape
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    cell_h, cell_w = height + padding, width + padding
    grid = np.full(
        (rows * cell_h + padding, columns * cell_w + padding, channels), pad_value, "float32"
    )
    for index, image in enumerate(images):
        row, col = divmod(index, columns)
        top, left = padding + row * cell_h, padding + col * cell_w
        grid[top : top + height, left : left + width] = image
    return np.round(grid * 255).astype("uint8")


def save_png(path, image):
    """Writes a uint8 `(H, W, C)` image as PNG, atomically.

    C is 1 (grey), 2 (grey and alpha), 3 (RGB) or 4 (RGBA): every layout PNG
    has, so a model of 2- or 4-channel images gets its pictures too.

    The file appears complete or not at all: it is written to a temporary file in
    the same folder and renamed.

    Example:
    >>> save_png("samples.png", image_grid(vae.sample(64, seed=0)))
    """
    # Pillow, not TensorFlow: writing a picture must not import TensorFlow on the
    # JAX and PyTorch backends (a GPU machine may not even have it).
    from PIL import Image

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(
            f"Expected a uint8 image of shape (H, W, C) with C from 1 to 4. "
            f"Received: dtype {image.dtype}, shape {image.shape}"
        )
    # Pillow reads (H, W) as grey, and (H, W, 2|3|4) as grey+alpha, RGB, RGBA.
    picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        picture.save(file, format="PNG")
    return path
