"""Training configuration as a frozen dataclass.

Values left as ``None`` are filled from the model's registry recipe
(:class:`nucleikit.models.registry.ModelSpec`), so ``TrainConfig(model="udnet")``
trains UD-Net the way Alom et al. did (96x96 patches, Adam 2e-4) and
``TrainConfig(model="micronet")`` trains MicroNet as Xing et al. did (200x200
crops, SGD with Nesterov momentum and a plateau schedule).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .augment import AugmentConfig
from .stopping import check_stopping

__all__ = ["TrainConfig"]


#: Training crop sides accepted (pixels): below 16 a network that downsamples 16 times sees one
#: pixel; above 2048 a batch of crops needs tens of GiB on a CPU (a crop of 100,000 asked for 149 GiB).
MIN_CROP, MAX_CROP = 16, 2048


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a detector training run.

    Attributes
    ----------
    model : str
        Registry name (``nucleikit models`` lists them).
    model_kwargs : dict
        Overrides of the architecture's defaults (e.g. ``{"width": 32}``).
    init : str or None
        Weights (bundled name or path) to start from: fine-tuning.
    freeze_blocks : int
        Freeze the first k blocks (MicroNet numbers them 1..10 from input to output).
    mpp : float or None
        Training resolution in um/px; None takes the recipe's (0.55 for CRCHisto).
    d_microns, alpha : float
        Proximity-map radius (um) and decay (Xing et al.: 15 px at 40x, alpha 3).
    sigma_px, dilation : float, int
        Gaussian density target (UD-Net): sigma in model pixels, dilation square.
    lam : float
        Background weight lambda of the weighted MSE.
    crop, batch_size, optimizer, lr : None or value
        None takes the recipe's value.
    steps : int
        Optimisation steps in total (a resumed run continues up to this).
    momentum, weight_decay : float
        SGD settings (weight decay also used by Adam).
    plateau_patience, plateau_factor : int, float
        Learning rate times ``plateau_factor`` after ``plateau_patience``
        validations without a better F1 (both optimisers).
    val_every : int
        Steps between validations (and checkpoints).
    stop_patience : int or None
        Stop before ``steps`` once this many validations in a row have not
        improved on the best score by ``stop_min_delta``
        (:mod:`nucleikit.train.stopping`); None trains all ``steps``.
    stop_min_delta : float
        Smallest validation gain that counts as an improvement for
        ``stop_patience`` (not for the learning-rate schedule).
    val_radius_um : float
        Matching radius for validation F1 (3.3 um = 6 px at 0.55 um/px).
    xi_grid, min_distance_grid : tuple of float
        Post-processing values tried on the validation images; the best pair is
        saved with the weights.
    seg_min_distance, seg_min_size : int
        Watershed seed distance and smallest instance (pixels) used to score
        segmentation validation (DSB score).
    colour : {"rgb", "grey"}
        Input colour for segmentation models (Alom et al. used grey).
    intensity : {"none", "percentile"}
        Per-image intensity normalisation of segmentation inputs before the
        data set's standardisation: "percentile" maps each image's 1st and
        99.8th percentiles to 0 and 1 (:func:`nucleikit.transforms.percentile_normalise`).
    seed : int
    threads : int
        torch intra-op threads.
    bf16 : bool
        bfloat16 autocast for the forward/backward pass.
    channels_last : bool
    augment : AugmentConfig
    """

    model: str = "micronet"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    freeze_blocks: int = 0
    mpp: float | None = None
    d_microns: float = 15 * 0.25
    alpha: float = 3.0
    sigma_px: float = 2.0
    dilation: int = 5
    lam: float = 5.0
    crop: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    steps: int = 4000
    momentum: float = 0.9
    weight_decay: float = 1e-4
    plateau_patience: int = 4
    plateau_factor: float = 0.5
    val_every: int = 200
    stop_patience: int | None = None
    stop_min_delta: float = 0.005
    val_radius_um: float = 6 * 0.55
    xi_grid: tuple[float, ...] = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8)
    min_distance_grid: tuple[float, ...] = (3, 4, 5, 6, 7, 8)
    seg_min_distance: int = 5
    seg_min_size: int = 10
    colour: str = "rgb"
    intensity: str = "none"
    seed: int = 0
    threads: int = 2
    bf16: bool = False
    channels_last: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"steps must be at least 1, got {self.steps}")
        if self.val_every < 1:
            raise ConfigError(f"val_every must be at least 1, got {self.val_every}")
        check_stopping(self.stop_patience, self.stop_min_delta)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a whole number >= 0, got {self.seed!r}")
        if self.crop is not None and not MIN_CROP <= self.crop <= MAX_CROP:
            raise ConfigError(f"crop must be between {MIN_CROP} and {MAX_CROP} pixels, got {self.crop!r}")
        if self.freeze_blocks < 0:
            raise ConfigError(f"freeze_blocks must be >= 0, got {self.freeze_blocks}")
        if self.colour not in ("rgb", "grey"):
            raise ConfigError(f"colour must be 'rgb' or 'grey', got {self.colour!r}")
        if self.intensity not in ("none", "percentile"):
            raise ConfigError(f"intensity must be 'none' or 'percentile', got {self.intensity!r}")
        if self.optimizer not in (None, "sgd", "adam"):
            raise ConfigError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")

    def resolved(self) -> "TrainConfig":
        """A copy with every ``None`` recipe value filled from the registry."""
        from ..models import get_spec

        spec = get_spec(self.model)
        recipe = dict(spec.train)
        fill = {
            "mpp": self.mpp if self.mpp is not None else spec.mpp,
            "crop": self.crop or recipe.get("crop", 200),
            "batch_size": self.batch_size or recipe.get("batch_size", 4),
            "optimizer": self.optimizer or recipe.get("optimizer", "sgd"),
            "lr": self.lr or recipe.get("lr", 0.01),
        }
        return dataclasses.replace(self, **fill)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["xi_grid"] = list(self.xi_grid)
        d["min_distance_grid"] = list(self.min_distance_grid)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        d = dict(d)
        if isinstance(d.get("augment"), dict):
            d["augment"] = AugmentConfig(**d["augment"])
        for key in ("xi_grid", "min_distance_grid"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)
