"""Reading image and mask files of any common format into numpy arrays.

Formats: PNG, JPEG, TIFF (OpenCV, falling back to ``tifffile``), GIF (first
frame), BMP; grey, grey + alpha, RGB, RGBA, palette, 1-bit and 16-bit.

Two entry points:

* :func:`read_image` gives what a model sees: uint8, ``(H, W)`` grey or
  ``(H, W, 3)`` RGB. Alpha is dropped, 16-bit is stretched to 8-bit, and an
  RGB image whose three channels are equal is returned as grey.
* :func:`read_mask` gives the raw label values: palette PNGs as their palette
  indices (not colours), 16-bit values kept, colour masks as RGB.

The pixel count is read from the file header and checked against a cap before
anything is decoded, so a small file claiming a huge size (an "image bomb")
is refused without allocating its pixels.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp")
LOSSY_EXTENSIONS = (".jpg", ".jpeg")
# 100 megapixels: far above any segmentation image, far below what exhausts memory.
DEFAULT_MAX_PIXELS = 100_000_000

# Decoding is done by us after the header check, so PIL's own bomb guard is not needed.
Image.MAX_IMAGE_PIXELS = None

_CV2_MODES = {"L", "LA", "RGB", "RGBA", "I;16", "I;16B", "I;16L"}
_CV2_FORMATS = {"PNG", "JPEG", "BMP", "TIFF"}
# The only decoders ever run on a file, whatever its name says: Pillow identifies files by content
# and would otherwise hand PostScript to Ghostscript, or any of its dozens of other plugins.
ALLOWED_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "GIF")
# Samples per pixel a decoded image may have (grey, grey + alpha, RGB, RGBA).
MAX_CHANNELS = 4


class ImageReadError(ValueError):
    """A file that cannot be read as an image; the message names the file."""


@dataclass
class Decoded:
    """A decoded file: the pixels and what was done to them on the way."""

    array: np.ndarray
    mode: str  # PIL mode of the file, e.g. "L", "RGB", "P", "I;16"
    format: str  # PIL format name, e.g. "PNG"
    palette: np.ndarray | None = None  # (256, 3) RGB for palette images
    notes: list[str] = field(default_factory=list)
    plain_png: bool = False  # an 8-bit grey or RGB PNG: its bytes can be kept as they are
    void: np.ndarray | None = None  # masks: where a float mask holds NaN or infinity (no label there)


def is_image_file(path: str | os.PathLike) -> bool:
    """True if the file name has an image extension (case-insensitive) and is not hidden."""
    name = os.path.basename(str(path))
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def probe(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int, str, str]:
    """Read only the header of an image file.

    Args:
        path: the file.
        max_pixels: refuse images with more pixels than this.

    Returns:
        ``(height, width, mode, format)``.

    Raises:
        ImageReadError: if the file is not an image or is larger than ``max_pixels``.
    """
    size = os.stat(path).st_size
    if size > max_file_bytes(max_pixels):
        raise ImageReadError(f"{path} is {size:,} bytes, more than an image within the pixel cap of {max_pixels:,} can take")
    with open(path, "rb") as handle:
        data = handle.read(min(size, 2**20))  # the header is at the start; a TIFF's may be further in
    try:
        pil = _open_header(data, path, max_pixels)
    except ImageReadError:
        with open(path, "rb") as handle:
            pil = _open_header(handle.read(), path, max_pixels)
    return pil.height, pil.width, pil.mode, pil.format or ""


def _open_header(data: bytes, path, max_pixels: int) -> Image.Image:
    if not data:
        raise ImageReadError(f"{path} is empty (0 bytes), not an image")
    try:
        pil = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.UnidentifiedImageError:
        raise ImageReadError(
            f"{path} is not an image: its contents are not any of {', '.join(IMAGE_EXTENSIONS)}"
        ) from None
    except Exception as exc:  # PIL raises several unrelated types for damaged files
        raise ImageReadError(
            f"{path} is not a readable image ({type(exc).__name__}: {exc}); "
            f"expected one of {', '.join(IMAGE_EXTENSIONS)}"
        ) from None
    _check_pixels(pil.width, pil.height, path, max_pixels)
    bands = len(pil.getbands())
    if bands > MAX_CHANNELS:
        raise ImageReadError(f"{path} has {bands} channels per pixel; expected at most {MAX_CHANNELS} (grey, RGB, RGBA)")
    return pil


def _check_pixels(width: int, height: int, path, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageReadError(
            f"{path} claims {width}x{height} = {width * height:,} pixels, "
            f"more than the cap of {max_pixels:,}; refusing to decode it"
        )


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_MODES = {(0, 8): "L", (0, 16): "I;16", (2, 8): "RGB", (2, 16): "RGB", (4, 8): "LA", (6, 8): "RGBA", (6, 16): "RGBA"}


def _png_header(data: bytes) -> tuple[int, int, str] | None:
    """(width, height, mode) of a PNG that OpenCV decodes exactly, else None (palette, 1-bit, ...)."""
    if len(data) < 33 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    mode = _PNG_MODES.get((data[25], data[24]))
    if mode is None or data[28] != 0:  # interlaced files go through PIL too
        return None
    return width, height, mode


def decode(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Decode an image file as stored: no colour conversion beyond BGR to RGB.

    Args:
        path: the file.
        max_pixels: the pixel cap checked from the header before decoding.

    Returns:
        A :class:`Decoded`; ``array`` is (H, W) or (H, W, C) in the file's own
        dtype, channels in RGB(A) order, palette images as indices.

    Raises:
        ImageReadError: naming the file if it cannot be decoded.
    """
    try:
        size = os.stat(path).st_size
        if size > max_file_bytes(max_pixels):
            raise ImageReadError(
                f"{path} is {size:,} bytes, more than an image within the pixel cap of {max_pixels:,} can take "
                f"({max_file_bytes(max_pixels):,} bytes); refusing to read it"
            )
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ImageReadError(f"cannot open {path}: {exc.strerror}") from None
    return decode_bytes(data, path, max_pixels)


def max_file_bytes(max_pixels: int) -> int:
    """The largest image file read at all: ``max_pixels`` of 4 channels of 16 bits, uncompressed, plus 1 MiB of headers."""
    return max_pixels * MAX_CHANNELS * 2 + 2**20


def decode_bytes(data: bytes, path: str | os.PathLike = "upload", max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """:func:`decode` for file contents already in memory (an upload); ``path`` names it in errors."""
    fast = _png_header(data)
    if fast is not None:
        # 8/16-bit grey, RGB, grey+alpha, RGBA PNG: the header is read here and OpenCV
        # decodes; parsing the header with PIL costs about as much as a small decode.
        width, height, mode = fast
        _check_pixels(width, height, path, max_pixels)
        # 8-bit grey (most masks) decodes about twice as fast with IMREAD_GRAYSCALE,
        # which gives the same pixels for such files.
        flag = cv2.IMREAD_GRAYSCALE if (mode == "L" and data[24] == 8) else cv2.IMREAD_UNCHANGED
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
        if arr is not None and arr.shape[:2] == (height, width):
            if arr.ndim == 3 and arr.shape[2] == 3:
                arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
            elif arr.ndim == 3 and arr.shape[2] == 4:
                arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
            plain = mode in ("L", "RGB") and data[24] == 8
            return Decoded(arr, mode, "PNG", None, plain_png=plain)
    pil = _open_header(data, path, max_pixels)
    fmt = pil.format or ""
    mode = pil.mode
    palette = None
    arr = None
    if fmt in _CV2_FORMATS and mode in _CV2_MODES:
        # OpenCV decodes several times faster than PIL; it reads the same bytes.
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if arr is not None:
            if arr.ndim == 3 and arr.shape[2] == 3:
                arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
            elif arr.ndim == 3 and arr.shape[2] == 4:
                arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
            if arr.shape[:2] != (pil.height, pil.width):
                arr = None  # e.g. a multi-page TIFF decoded oddly: use the slow path
    if arr is None:
        arr, palette = _decode_slow(data, pil, path)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    # IHDR byte 24 is the bit depth; colour type (byte 25) is implied by the PIL mode.
    plain = fmt == "PNG" and mode in ("L", "RGB") and len(data) > 25 and data[24] == 8
    return Decoded(arr, mode, fmt, palette, plain_png=plain)


def _decode_slow(data: bytes, pil: Image.Image, path) -> tuple[np.ndarray, np.ndarray | None]:
    fmt = pil.format or ""
    try:
        if fmt == "TIFF":
            arr = _read_tiff_page(data, path, pil.width * pil.height)
            if arr is not None:
                return arr, None
        pil.seek(0)  # first frame of a GIF or multi-page file
        if pil.mode == "P":
            palette = np.asarray(pil.getpalette() or [], np.uint8)
            palette = np.pad(palette, (0, max(0, 768 - palette.size)))[:768].reshape(256, 3)
            return np.asarray(pil), palette
        if pil.mode == "1":
            return np.asarray(pil, dtype=np.uint8) * 255, None
        if pil.mode in ("LA", "PA"):
            return np.asarray(pil.convert("LA"))[:, :, 0], None
        if pil.mode in ("I", "F", "I;16", "I;16B", "I;16L"):
            return np.asarray(pil), None
        if pil.mode in ("RGB", "RGBA", "L"):
            return np.asarray(pil), None
        return np.asarray(pil.convert("RGB")), None
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(f"{path} could not be decoded as {fmt or 'an image'}: {exc}") from None


def _read_tiff_page(data: bytes, path, max_pixels: int) -> np.ndarray | None:
    """The first page of a TIFF with ``tifffile``, after checking its shape; None when tifffile cannot read it.

    The header check before it saw only width x height. A TIFF page may hold
    a volume (depth, samples per pixel): its shape is checked against the
    same budget (at most ``max_pixels`` pixels of at most ``MAX_CHANNELS``
    samples) before anything is decoded.
    """
    try:
        import tifffile
    except ImportError:
        return None
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages[0]
            shape = tuple(int(x) for x in page.shape)
            values = int(np.prod(shape, dtype=np.int64))
            if values > max_pixels * MAX_CHANNELS or len(shape) > 3 or (len(shape) == 3 and min(shape[0], shape[-1]) > MAX_CHANNELS):
                raise ImageReadError(
                    f"{path} holds a page of shape {'x'.join(map(str, shape))} ({values:,} values): a volume or a stack, "
                    f"not a 2-D image of at most {MAX_CHANNELS} channels; refusing to decode it"
                )
            arr = np.asarray(page.asarray())
    except ImageReadError:
        raise
    except Exception:
        return None  # PIL reads the TIFFs tifffile does not
    if arr.ndim == 3 and arr.shape[0] <= MAX_CHANNELS < arr.shape[-1]:
        arr = np.moveaxis(arr, 0, -1)  # planar (separate) samples
    return arr


def to_uint8(arr: np.ndarray, path="") -> tuple[np.ndarray, str | None]:
    """Convert image pixels of any depth to uint8; return the array and a note if scaled.

    16-bit and float images are stretched linearly from their own minimum and
    maximum to 0..255 (a 12-bit microscope image would be almost black if
    divided by 257); an image already within 0..255 is only cast.
    """
    if arr.dtype == np.uint8:
        return arr, None
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255, None
    a = arr.astype(np.float64)
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if lo >= 0 and hi <= 255 and np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.uint8), None
    if hi <= lo:
        out = np.zeros(arr.shape, np.uint8)
    else:
        out = np.clip((a - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)
    return out, f"{path}: {arr.dtype} pixels {lo:g}..{hi:g} stretched to 0..255"


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Read an image for a model: uint8, (H, W) grey or (H, W, 3) RGB.

    Args:
        path: the file (PNG, JPEG, TIFF, GIF, BMP).
        max_pixels: the pixel cap checked from the header.

    Returns:
        A :class:`Decoded` whose ``array`` is uint8 grey or RGB; ``notes``
        says what was converted (alpha dropped, 16-bit stretched, ...).
    """
    return as_model_image(decode(path, max_pixels), path)


def read_image_bytes(data: bytes, name: str = "upload", max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """:func:`read_image` for file contents in memory (an uploaded file called ``name``)."""
    return as_model_image(decode_bytes(data, name, max_pixels), name)


def as_model_image(dec: Decoded, path: str | os.PathLike = "") -> Decoded:
    """Convert decoded pixels to what a model sees (uint8 grey or RGB), noting each conversion."""
    arr = dec.array
    if dec.palette is not None:
        arr = dec.palette[arr]
    arr, note = to_uint8(arr, path)
    if note:
        dec.notes.append(note)
    if arr.ndim == 3:
        if arr.shape[2] == 4:
            if arr[:, :, 3].min() < 255:
                dec.notes.append(f"{path}: alpha channel dropped")
            arr = arr[:, :, :3]
        elif arr.shape[2] == 2:
            arr = arr[:, :, 0]
        elif arr.shape[2] > 4:
            raise ImageReadError(f"{path} has {arr.shape[2]} channels; expected grey, RGB or RGBA")
    if arr.ndim == 3 and is_grey_rgb(arr):
        arr = arr[:, :, 0]
    dec.array = np.ascontiguousarray(arr)
    return dec


def read_mask(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Read a mask keeping its label values: palette indices, 16-bit ids, RGB colours.

    Alpha is dropped; an RGB mask whose channels are equal becomes (H, W).

    Args:
        path: the file.
        max_pixels: the pixel cap checked from the header.

    Returns:
        A :class:`Decoded` with ``array`` (H, W) integer values or (H, W, 3) colours.
    """
    dec = decode(path, max_pixels)
    arr = dec.array
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.ndim == 3:
        if arr.shape[2] == 2:
            arr = arr[:, :, 0]
        elif arr.shape[2] >= 3:
            arr = arr[:, :, :3]
            if is_grey_rgb(arr):
                arr = arr[:, :, 0]
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(arr)
        if not finite.all():
            # NaN / infinity is no label: the caller makes those pixels void and reports them.
            dec.void = ~finite
            arr = np.where(finite, arr, 0)
        if np.all(np.mod(arr, 1) == 0):
            arr = arr.astype(np.int64)
        else:
            # A probability map saved as float: values in [0, 1] thresholded at 0.5.
            dec.notes.append(f"{path}: float mask thresholded at half its maximum")
            arr = (arr >= float(arr.max()) / 2).astype(np.uint8)
    dec.array = np.ascontiguousarray(arr)
    return dec


def is_grey_rgb(arr: np.ndarray) -> bool:
    """True if a (H, W, 3) array has three equal channels."""
    return bool(np.array_equal(arr[:, :, 0], arr[:, :, 1]) and np.array_equal(arr[:, :, 1], arr[:, :, 2]))


def encode_png(arr: np.ndarray, compression: int = 1, *, mask: bool = False) -> bytes:
    """PNG bytes of a uint8 (H, W) grey or (H, W, 3) RGB array (fast compression).

    Masks (long runs of one value) use zlib's run-length strategy, photos its
    Huffman-only strategy: each is faster than the default and about as small
    or smaller on such data.
    """
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    strategy = cv2.IMWRITE_PNG_STRATEGY_RLE if mask else cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY
    params = [cv2.IMWRITE_PNG_COMPRESSION, compression, cv2.IMWRITE_PNG_STRATEGY, strategy]
    ok, buf = cv2.imencode(".png", arr, params)
    if not ok:
        raise ValueError(f"cannot encode an array of shape {arr.shape} and dtype {arr.dtype} as PNG")
    return buf.tobytes()


def write_png(path: str | os.PathLike, arr: np.ndarray, compression: int = 1, *, mask: bool = False) -> None:
    """Write a uint8 (H, W) or RGB (H, W, 3) array as a PNG file, atomically."""
    from segcore.fsutil import write_bytes_atomic

    write_bytes_atomic(path, encode_png(arr, compression, mask=mask))
