"""Joint augmentation: image and mask stay aligned, borders are void, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from segcore.config import AugmentConfig
from segcore.data.augment import AugmentParams, apply_params, augment_pair, draw_params, sample_rng

NONE = AugmentParams(False, False, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def blocks(size=64, block=8):
    """A mask of square blocks with classes 0..2, and an image whose value is 100 * class."""
    yy, xx = np.mgrid[0:size, 0:size]
    mask = (((yy // block) + 2 * (xx // block)) % 3).astype(np.uint8)
    image = np.repeat((mask * 100)[..., None], 3, axis=2).astype(np.uint8)
    return image, mask


def test_flip_is_exact_on_both():
    image, mask = blocks()
    img2, m2 = apply_params(image, mask, AugmentParams(True, False, 0, 1, 0, 0, 0, 1))
    np.testing.assert_array_equal(img2, image[:, ::-1])
    np.testing.assert_array_equal(m2, mask[:, ::-1])
    img3, m3 = apply_params(image, mask, AugmentParams(False, True, 0, 1, 0, 0, 0, 1))
    np.testing.assert_array_equal(m3, mask[::-1])


def test_transposition_is_exact_on_both_and_only_for_square_windows():
    image, mask = blocks()
    turned = AugmentParams(False, False, 0, 1, 0, 0, 0, 1, transpose=True)
    img2, m2 = apply_params(image, mask, turned)
    np.testing.assert_array_equal(m2, mask.T)
    np.testing.assert_array_equal(img2, image.transpose(1, 0, 2))
    wide_img, wide_mask = image[:32], mask[:32]
    img3, m3 = apply_params(wide_img, wide_mask, turned)  # 32x64: a transposition would change the shape
    np.testing.assert_array_equal(m3, wide_mask)
    assert img3.shape == wide_img.shape


def test_transposition_is_drawn_half_the_time_and_leaves_the_other_draws_alone():
    plain, turning = AugmentConfig(), AugmentConfig(transpose=True)
    drawn = []
    for j in range(200):
        a = draw_params(plain, (64, 64), sample_rng(5, 0, j))
        b = draw_params(turning, (64, 64), sample_rng(5, 0, j))
        assert not a.transpose
        assert (a.hflip, a.vflip, a.angle, a.scale) == (b.hflip, b.vflip, b.angle, b.scale)  # same draws as before
        drawn.append(b.transpose)
        assert not draw_params(turning, (64, 96), sample_rng(5, 0, j)).transpose  # never for a non-square window
    assert 0.35 < np.mean(drawn) < 0.65


def test_shift_fills_mask_border_with_void_and_image_with_zero():
    image, mask = blocks()
    img2, m2 = apply_params(image, mask, AugmentParams(False, False, 0.0, 1.0, 10.0, 0.0, 0.0, 1.0))
    assert (m2[:, :10] == 255).all()
    assert (img2[:, :10] == 0).all()
    np.testing.assert_array_equal(m2[:, 10:], mask[:, :-10])  # integer shift: exact copy


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_transform_keeps_image_and_mask_aligned(seed):
    image, mask = blocks(block=16)
    cfg = AugmentConfig(rotate_degrees=30, zoom=0.2, shift=0.1, brightness=0.0, contrast=0.0)
    img2, m2 = augment_pair(image, mask, cfg, sample_rng(seed, 0, 0))
    assert set(np.unique(m2)) <= {0, 1, 2, 255}  # nearest: no blended class ids
    valid = m2 != 255
    agree = np.rint(img2[..., 0] / 100.0) == m2
    # Only block edges (bilinear image vs nearest mask) may disagree; a mask
    # transformed differently from its image would agree on about a third.
    assert agree[valid].mean() > 0.9
    assert valid.mean() > 0.5
    misaligned = np.rint(img2[..., 0] / 100.0) == m2[:, ::-1]
    assert misaligned[valid & (m2[:, ::-1] != 255)].mean() < 0.6


def test_same_seed_same_result_other_seed_differs():
    image, mask = blocks()
    cfg = AugmentConfig()
    a = augment_pair(image, mask, cfg, sample_rng(7, 3, 11))
    b = augment_pair(image, mask, cfg, sample_rng(7, 3, 11))
    c = augment_pair(image, mask, cfg, sample_rng(7, 4, 11))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_many_label_planes_and_grey_images_keep_their_shapes():
    image, mask = blocks()
    grey = image[..., :1]
    planes = np.stack([(mask == k).astype(np.uint8) for k in range(3)] * 2, axis=-1)  # 6 planes > 4
    params = AugmentParams(False, False, 0.0, 1.0, 0.0, 6.0, 0.0, 1.0)
    img2, p2 = apply_params(grey, planes, params)
    assert img2.shape == (64, 64, 1) and p2.shape == (64, 64, 6)
    assert (p2[:6] == 255).all()
    np.testing.assert_array_equal(p2[6:], planes[:-6])


def test_brightness_and_contrast_change_the_image_only():
    image = np.full((16, 16), 100, np.uint8)
    image[:8] = 50
    mask = np.zeros((16, 16), np.uint8)
    img2, m2 = apply_params(image, mask, AugmentParams(False, False, 0, 1, 0, 0, 0.1, 2.0))
    # mean 75; contrast 2 -> 25 / 125; brightness +25.5 -> 50.5 / 150.5 rounded
    assert img2[0, 0] == 50 and img2[15, 15] == 150
    np.testing.assert_array_equal(m2, mask)


def test_disabled_returns_inputs_and_size_mismatch_is_refused():
    image, mask = blocks()
    out = augment_pair(image, mask, AugmentConfig(enabled=False), sample_rng(0, 0, 0))
    assert out[0] is image and out[1] is mask
    with pytest.raises(ValueError, match="differ in size"):
        apply_params(image, mask[:32], NONE)
