"""A training plan from a dataset's fingerprint: every setting with the reason for its value.

The rules (each value names its reason in the plan):

- **Resolution.** The fingerprint measures how much of each class survives
  when the labels are scaled down (shorter side at 128, then 256 px) and
  back up: the best Dice a perfect model could reach at that scale. The plan
  trains at the smallest of those scales where every scored class keeps at
  least ``SURVIVAL_DICE`` (``fit short_side``: the whole image's context,
  cheap). Otherwise (a membrane, a vessel, a pole would be lost) it trains
  at the images' own resolution (``fit native``) on random patches, and
  predicts in Gaussian-blended tiles.
- **Patch / image size.** 256 when the images are at least that large, else
  the largest multiple of 32 they hold (at least 64).
- **Batch.** About ``PIXELS_PER_BATCH`` pixels a step (8 patches of 256,
  16 of 128), at most the number of training images times the patches per
  image, at least 2.
- **Patches per image.** An epoch draws at least ``PATCHES_PER_EPOCH``
  windows, and at least ``TRAIN_PER_VALIDATION`` times as many as validation
  predicts (the validation images cut into windows), each image several
  times when there are few: validation and the checkpoint are paid once per
  useful amount of training, not most of each epoch on large images.
- **Normalisation.** Group norm: with small batches and few images batch
  norm's moving averages lag (segcore's health check names that case);
  batch norm only from ``BATCH_NORM_FROM`` images and a batch of 16.
- **Loss.** Dice + cross-entropy when a scored class is rare (under 10% of
  the pixels) or a structure is thin, else the head's default.
- **Class weighting.** On when several classes are scored and one of them
  is rare: the cross-entropy is then weighted by the square root of the
  inverse class frequency (capped at 50x), so that rare classes pull more
  than their share without being painted wherever the model is unsure; the
  Dice term is a mean over classes already. With one
  scored class (a foreground against its background) the Dice term does it.
- **Augmentation.** On; rotations and zoom a little stronger under 50 images.
  Flips only along an axis whose label layout is mirror-symmetric (the
  fingerprint's layout asymmetry under ``UPRIGHT_ASYMMETRY``): a street
  scene is not flipped upside down (sky above, road below is what the
  model should learn), a micrograph is flipped both ways. Where both
  flips are on and the layout down the rows is like the one across the
  columns (``transpose`` under the same threshold), square windows are also
  transposed: with the flips, the eight symmetries of a square.
- **Budget.** Enough minutes for about ``PASSES`` passes over the training
  images' pixels at the chosen scale, at ``TRAIN_PIXELS_PER_SECOND`` (what
  a U-Net of 16 filters trains on 2 CPU cores, measured on ISBI and CamVid
  patches), plus a quarter for validation; at least ``BUDGET_MINUTES``, at
  most ``MAX_BUDGET_MINUTES``. More data gets more time; a faster machine
  fits more epochs in the same minutes. A cosine schedule ends when the
  budget does (``budget_minutes``); ``epochs`` is only a cap. Early
  stopping is off: the schedule's end is the stop.
- **Test-time augmentation.** On: averaging the flips training used (up to
  four views) costs up to 4x the inference time, which is small next to
  training here. The transposed views are not added: measured, they moved
  no score by more than 0.001 at twice the time.

The plan is deterministic: the same fingerprint gives the same plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from segcore.config import AugmentConfig, ModelConfig, RunConfig, SplitConfig, TrainConfig
from segcore.data.arrays import window_starts
from segcore.data.fingerprint import Fingerprint

MIN_STRUCTURE_PX = 4.0
SURVIVAL_DICE = 0.97
PIXELS_PER_BATCH = 2**19
PATCHES_PER_EPOCH = 64
TRAIN_PER_VALIDATION = 2  # an epoch trains on at least this many windows for each one validation predicts
BATCH_NORM_FROM = 500
BUDGET_MINUTES = 12.0
MAX_BUDGET_MINUTES = 60.0
PASSES = 70  # passes over the training pixels the budget is sized for
# 16-filter U-Net, 2 CPU cores, steps only: 741k (ISBI) and 669k (CamVid) measured with segcore's GroupNorm and
# tf.data's autotuner off (05849cc); 250k with Keras's layer and the autotuner's idle waits, when the budgets were
# sized as 25 passes: 70 passes at 700k are the same minutes.
TRAIN_PIXELS_PER_SECOND = 700_000
MAX_EPOCHS = 1000
RARE_CLASS = 0.10
UPRIGHT_ASYMMETRY = 0.3  # a layout this far from its mirror image along an axis is not flipped along it


@dataclass(frozen=True)
class Planned:
    """One setting of a plan: its dotted name (``train.fit``), value and reason."""

    setting: str
    value: Any
    reason: str


@dataclass(frozen=True)
class Plan:
    """Settings derived from a fingerprint, each with its reason."""

    fingerprint: Fingerprint
    settings: tuple[Planned, ...] = field(default_factory=tuple)

    def value(self, setting: str) -> Any:
        return next(p.value for p in self.settings if p.setting == setting)

    def config(self, base: RunConfig | None = None) -> RunConfig:
        """``base`` (default settings) with every planned value applied and the dataset set."""
        base = base or RunConfig()
        model = {p.setting.split(".", 1)[1]: p.value for p in self.settings if p.setting.startswith("model.")}
        train = {p.setting.split(".", 1)[1]: p.value for p in self.settings
                 if p.setting.startswith("train.") and not p.setting.startswith("train.augment.")}
        augment = {p.setting.split(".", 2)[2]: p.value for p in self.settings if p.setting.startswith("train.augment.")}
        t = replace(base.train, dataset=self.fingerprint.name, **train,
                    augment=replace(base.train.augment, **augment) if augment else base.train.augment)
        return replace(base, model=replace(base.model, **model), train=t)

    def to_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint.to_dict(),
                "settings": {p.setting: {"value": p.value, "reason": p.reason} for p in self.settings}}

    def lines(self) -> list[str]:
        """The plan as text, one setting a line with its reason."""
        width = max((len(p.setting) for p in self.settings), default=0)
        return [f"{p.setting.ljust(width)}  {p.value!s:<12}  {p.reason}" for p in self.settings]


def changes(plan: dict[str, Any], cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """The planned settings a run's settings differ from: ``{setting: {"planned", "chosen"}}``."""
    data = cfg.to_dict() if hasattr(cfg, "to_dict") else {}
    out = {}
    for setting, entry in (plan.get("settings") or {}).items():
        node: Any = data
        for part in setting.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node != entry.get("value"):
            out[setting] = {"planned": entry.get("value"), "chosen": node}
    return out


def _patch(short: int) -> int:
    if short >= 256:
        return 256
    return max(64, (short // 32) * 32)


def make_plan(fp: Fingerprint) -> Plan:
    """The plan for a fingerprint (deterministic; see the module notes for the rules)."""
    out: list[Planned] = []
    thin_name, thin = fp.thinnest
    short = max(1, fp.median_short_side)
    # resolution: the smallest scale every class survives
    fit, size, why = None, None, ""
    measured = [side for side in (128, 256) if side < short and fp.survival.get(str(side))]
    if not measured and thin is None:
        fit, size = "short_side", min(128, _patch(short))
        why = "no structure could be measured in the masks; the shorter side at 128 px keeps the whole image in view"
    for side in measured:
        name, kept = fp.weakest_at(side)
        if kept >= SURVIVAL_DICE:
            fit, size = "short_side", side
            why = (f"with the shorter side ({short} px) at {side} px every class keeps at least {kept:.0%} of its labels "
                   f"(the least, '{name}'; labels scaled there and back): the whole image's context at a low cost")
            break
    if fit is None:
        fit, size = "native", _patch(short)
        lost = [(side, *fp.weakest_at(side)) for side in measured]
        if lost:
            side, name, kept = lost[-1]
            why = (f"'{name}' keeps only {kept:.0%} of its labels with the images ({fp.median_height}x{fp.median_width}) "
                   f"scaled to {side} px on the shorter side (scaled there and back; at least {SURVIVAL_DICE:.0%} wanted): "
                   f"train on {size} px patches at their own resolution, predict in blended tiles")
        else:
            why = (f"the images ({fp.median_height}x{fp.median_width}) are small: train on {size} px windows at their "
                   "own resolution, predict in blended tiles")
    out.append(Planned("train.fit", fit, why))
    out.append(Planned("train.image_size", size, "the patch (window) size: 256 px where the images hold it"
                       if fit == "native" else "the training scale chosen above"))
    # how much an epoch draws, and the batch
    split = SplitConfig()
    val_images = max(1, round(fp.num_images * split.val_fraction))
    train_images = max(1, fp.num_images - val_images - round(fp.num_images * split.test_fraction))
    scale = 1.0 if fit == "native" else min(1.0, size / short)
    height, width = max(size, round(fp.median_height * scale)), max(size, round(fp.median_width * scale))
    val_windows = val_images * len(window_starts(height, size)) * len(window_starts(width, size))
    wanted = max(PATCHES_PER_EPOCH, TRAIN_PER_VALIDATION * val_windows)
    per_image = max(1, min(16, math.ceil(wanted / train_images)))
    if per_image > 1:
        why_epoch = (f"about {wanted} random windows an epoch from about {train_images} training images"
                     + (f": {TRAIN_PER_VALIDATION}x the {val_windows} windows validation predicts"
                        if wanted > PATCHES_PER_EPOCH else ""))
        out.append(Planned("train.patches_per_image", per_image, why_epoch))
    else:
        out.append(Planned("train.patches_per_image", 1, f"{train_images} training images make a full epoch"))
    batch = int(max(2, min(16, PIXELS_PER_BATCH // (size * size), train_images * per_image)))
    out.append(Planned("train.batch_size", batch, f"about {PIXELS_PER_BATCH // 1024}k pixels a step at {size} px"))
    # normalisation
    if fp.num_images >= BATCH_NORM_FROM and batch >= 16:
        out.append(Planned("model.norm", "batch", f"{fp.num_images} images and a batch of {batch}: batch statistics are stable"))
    else:
        out.append(Planned("model.norm", "group", f"a batch of {batch} from {fp.num_images} images: batch norm's moving "
                           "averages would lag; group norm does not depend on the batch"))
    # loss
    scored = range(0 if not fp.class0_is_background and fp.mode != "multilabel" else 1, fp.num_classes)
    fractions = [fp.class_fraction[k] for k in scored if k < len(fp.class_fraction)]
    rare = [fp.class_names[k] for k in scored if k < len(fp.class_fraction) and 0 < fp.class_fraction[k] < RARE_CLASS]
    thin_loss = thin is not None and thin < 4 * MIN_STRUCTURE_PX
    if rare or thin_loss:
        reason = (f"rare classes ({', '.join(rare[:3])}{'...' if len(rare) > 3 else ''} under {RARE_CLASS:.0%} of the pixels)"
                  if rare else f"thin structures ('{thin_name}', {thin:.1f} px)")
        out.append(Planned("train.loss", "dice_ce", f"{reason}: Dice keeps them weighed, cross-entropy keeps the gradients smooth"))
    else:
        out.append(Planned("train.loss", "auto", "classes are not rare"
                           + (f" (smallest share {min(fractions):.0%})" if fractions else "") + ": the head's own loss"))
    if rare and len(fractions) > 1:
        out.append(Planned("train.class_weighting", True,
                           f"{len(fractions)} classes are scored and {len(rare)} are rare: cross-entropy weighted by "
                           "the square root of the inverse class frequency, so the large classes do not drown the rare ones "
                           "and the rare ones are not painted wherever the model is unsure"))
    else:
        out.append(Planned("train.class_weighting", False,
                           "one class is scored: the Dice term weighs it" if len(fractions) <= 1
                           else "no class is rare: plain cross-entropy"))
    # augmentation
    few = fp.num_images < 50
    out.append(Planned("train.augment.rotate_degrees", 30.0 if few else 15.0,
                       f"{fp.num_images} images: " + ("stronger rotations" if few else "the usual rotations")))
    out.append(Planned("train.augment.zoom", 0.2 if few else 0.1, "zoom in and out " + ("by up to 20%" if few else "by up to 10%")))
    for key, axis, sides in (("vflip", "vertical", "top and bottom"), ("hflip", "horizontal", "left and right")):
        asym = fp.layout_asymmetry.get(axis)
        if asym is not None and asym >= UPRIGHT_ASYMMETRY:
            out.append(Planned(f"train.augment.{key}", False,
                               f"the classes' layout differs {asym:.0%} between {sides} (mirrored; at least "
                               f"{UPRIGHT_ASYMMETRY:.0%} counts as upright): a {axis} flip would show scenes that never occur"))
        else:
            measured = f"the classes' layout differs {asym:.0%} between {sides}" if asym is not None else "no layout measured"
            out.append(Planned(f"train.augment.{key}", True, f"{measured} (under {UPRIGHT_ASYMMETRY:.0%}): {axis} flips are "
                               "as likely as the originals"))
    both_flips = all(p.value for p in out if p.setting in ("train.augment.vflip", "train.augment.hflip"))
    turn = fp.layout_asymmetry.get("transpose")
    if not both_flips:
        out.append(Planned("train.augment.transpose", False, "the layout has an up or a side (above): a quarter turn "
                           "would show scenes that never occur"))
    elif turn is None:
        out.append(Planned("train.augment.transpose", False, "no layout measured: windows are not transposed"))
    elif turn >= UPRIGHT_ASYMMETRY:
        out.append(Planned("train.augment.transpose", False, f"the classes' layout down the rows differs {turn:.0%} from "
                           f"the one across the columns (at least {UPRIGHT_ASYMMETRY:.0%}): rows and columns are not "
                           "alike, windows are not transposed"))
    else:
        out.append(Planned("train.augment.transpose", True, f"no up or side, and the layout down the rows differs "
                           f"{turn:.0%} from the one across the columns (under {UPRIGHT_ASYMMETRY:.0%}): windows are "
                           "also transposed (a quarter turn and a flip), the eight symmetries of a square"))
    # budget and schedule
    pass_pixels = train_images * height * width
    minutes = PASSES * pass_pixels / TRAIN_PIXELS_PER_SECOND / 60 * 1.25
    budget = float(min(MAX_BUDGET_MINUTES, max(BUDGET_MINUTES, round(minutes))))
    out.append(Planned("train.budget_minutes", budget,
                       f"about {PASSES} passes over {train_images} images of {height}x{width} px take ~{round(minutes)} min on "
                       f"2 CPU cores ({TRAIN_PIXELS_PER_SECOND // 1000}k training pixels a second), validation included; "
                       f"{BUDGET_MINUTES:g} to {MAX_BUDGET_MINUTES:g} min: a faster machine fits more epochs"))
    out.append(Planned("train.epochs", MAX_EPOCHS, "a cap only: the budget decides"))
    out.append(Planned("train.lr_schedule", "cosine", "the learning rate falls to 0 as the budget ends"))
    out.append(Planned("train.early_stopping_patience", 0, "off: the cosine schedule's end is the stop"))
    chosen = {p.setting: p.value for p in out}
    flips = [a for a, k in (("horizontal", "hflip"), ("vertical", "vflip")) if chosen[f"train.augment.{k}"]]
    views = 2 ** len(flips)
    if flips:
        out.append(Planned("train.tta", True, f"average the {views} views of the {' and '.join(flips)} flips training used "
                           f"at evaluation and prediction: {views}x a small inference time"))
    else:
        out.append(Planned("train.tta", False, "no flip is used in training, so there is no view to average"))
    return Plan(fp, tuple(out))


def plan_dataset(dataset) -> Plan:
    """The plan for a ``Dataset`` (reads a sample of its masks for the fingerprint)."""
    from segcore.data.fingerprint import fingerprint

    return make_plan(fingerprint(dataset))
