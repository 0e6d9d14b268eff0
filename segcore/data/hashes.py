"""A hash of an image's pixels: the same for the same picture whatever its file name, format or dataset.

``pixel_hash`` is the SHA-256 of the array's shape, dtype and bytes (uint8
as segcore stores images), so a copy of an image under another name, in
another folder or in another dataset has the same hash, and re-encoding the
file losslessly does not change it. Runs record the hashes of the images
they trained and validated on; evaluations use them to find leaks.
"""

from __future__ import annotations

import hashlib

import numpy as np


def pixel_hash(image: np.ndarray) -> str:
    """The hex SHA-256 of an image's pixels (shape and dtype included); 32 hex digits are kept."""
    array = np.ascontiguousarray(image)
    digest = hashlib.sha256()
    digest.update(f"{array.shape}|{array.dtype.str}|".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()[:32]
