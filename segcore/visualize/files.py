"""Image files through the browser: uploaded bytes decoded as a model sees them, predicted masks encoded for download."""

from __future__ import annotations

import io
import zipfile

import numpy as np

from segcore.data import imageio


def decode_image(data: bytes, name: str = "upload") -> np.ndarray:
    """Decode uploaded image bytes as a model sees them: uint8 grey or RGB.

    Raises:
        ValueError: naming the file when the bytes are not an image that can be read.
    """
    return imageio.read_image_bytes(data, name).array


def encode_mask(mask: np.ndarray, mode: str, stem: str = "mask") -> tuple[bytes, str, str]:
    """A predicted mask as a downloadable file in the canonical encoding.

    Binary and multiclass: one PNG of class ids (0 = background). Multilabel:
    a zip of one 0/1 PNG per foreground class, named as
    :func:`segcore.prediction.masks.label_plane_files` names them (``<stem>_<k>.png``).

    Returns:
        ``(data, file_name, mime_type)``.
    """
    mask = np.ascontiguousarray(np.asarray(mask).astype(np.uint8))
    if mode == "multilabel" and mask.ndim == 3:
        from segcore.prediction.masks import label_plane_files

        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, plane in label_plane_files(mask, stem):
                zf.writestr(name, imageio.encode_png(plane, mask=True))
        return buffer.getvalue(), f"{stem}_masks.zip", "application/zip"
    if mask.ndim != 2:
        raise ValueError(f"expected a (H, W) mask for mode {mode!r}; got shape {mask.shape}")
    return imageio.encode_png(mask, mask=True), f"{stem}_mask.png", "image/png"
