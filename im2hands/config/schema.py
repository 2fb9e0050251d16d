"""Typed config schemas: one dataclass per component, nested into :class:`ExperimentConfig`.

Every field has a default, a type OmegaConf checks, and a docstring on the line below it
giving its meaning and units. Ranges are declared with ``field(metadata={"range": (lo, hi)})``
(inclusive; ``None`` for an open end; for a list key, every element), the allowed values of a
key with ``field(metadata={"choices": (...)})``, ``[low, high]`` pairs with ``_list_range(...,
ascending=True)``; :func:`im2hands.config.load.check_ranges` checks them all. Every numeric key
has a range.

Config files (YAML) hold only differences from these defaults; see ``docs/architecture.md`` for
where each section is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


from im2hands.config.fields import _choice, _list_range, _range  # noqa: F401  (re-exported for schema modules)
from im2hands.config.image_schema import CropNetConfig, HandDetConfig


@dataclass
class HandModelConfig:
    """Which MANO-format hand model files to use."""

    mano_dir: Optional[str] = None
    """Folder holding MANO_RIGHT.pkl and MANO_LEFT.pkl (licensed MANO or converted copies).
    None: the environment variable IM2HANDS_MANO_DIR, else the open hand model shipped with
    the package."""


@dataclass
class SynthConfig:
    """Synthetic two-hand data generation (``im2hands data synth``)."""

    image_size: int = _range(256, 16, 4096)
    """Side of the square RGB image, pixels."""
    focal_range: List[float] = _list_range([450.0, 650.0], 1.0, None, ascending=True)
    """Focal length range in pixels for a 256-pixel image (scaled with image_size)."""
    fill_range: List[float] = _list_range([0.7, 0.9], 0.05, 1.0, ascending=True)
    """Fraction of the image side covered by the two hands' bounding box (IntagHand crops at
    0.8); the camera distance follows from it and the focal length."""
    center_jitter: float = _range(0.05, 0.0, 0.5)
    """Largest shift of the hands' box centre from the image centre, as a fraction of the side."""
    val_every: int = _range(20, 2, None)
    """Every val_every-th sample (index % val_every == 1) goes to the val split."""
    test_every: int = _range(20, 2, None)
    """Every test_every-th sample (index % test_every == 0) goes to the test split."""
    interaction_ratio: float = _range(0.85, 0.0, 1.0)
    """Fraction of samples posed from a named two-hand interaction template; the rest use two
    independent random single-hand poses placed near each other."""
    shape_std: float = _range(1.0, 0.0, 3.0)
    """Standard deviation of the sampled shape coefficients (betas); clipped to +-3."""
    max_penetration_cm3: float = _range(0.5, 0.0, None)
    """Largest allowed interpenetration volume of the two hands, cm^3; more is rejected."""
    max_tries: int = _range(20, 1, None)
    """Attempts at a placement before a sample's poses are redrawn."""
    device: str = "cpu"
    """Device that poses the final meshes and rasterizes them: cpu, cuda, cuda:N or auto (cuda
    when available). Sampling and placing the poses stays on the CPU, so the stored parameters
    and camera do not depend on it; images, masks, depth and keypoints made on CUDA match the
    CPU's up to float rounding (a few edge pixels). Set by ``im2hands data synth --device``."""


@dataclass
class DataConfig:
    """Dataset loading (the torch Dataset) and on-the-fly occupancy sampling."""

    root: Optional[str] = None
    """Dataset folder (the toolkit's format, docs/data_format.md). Required to train."""
    split: str = "train"
    """Split name: a file ``splits/<split>.txt`` in root, or ``all``."""
    num_points: int = _range(2048, 1, None)
    """Occupancy query points per hand and sample."""
    uniform_ratio: float = _range(0.5, 0.0, 1.0)
    """Fraction of query points uniform in the hand's box; the rest are near the surface."""
    box_side: float = _range(0.44, 0.0, None)
    """Side of each hand's query cube in its palm frame, metres (HALO: 1.1 x 0.4 m)."""
    surface_sigma: float = _range(0.004, 0.0, None)
    """Standard deviation of the noise added to surface samples, metres (HALO: 4 mm)."""
    tip_ratio: float = _range(0.0, 0.0, 1.0)
    """Fraction of the near-surface points drawn only from the surface within ``tip_radius``
    of the five fingertip keypoints (the distal phalanges, which area weighting samples
    rarely); 0: HALO's sampling. Training only; validation is uniform."""
    tip_radius: float = _range(0.025, 0.0, None)
    """Radius of the fingertip regions for ``tip_ratio``, metres."""
    seed: int = _range(0, 0, 2**32 - 1)
    """Seed for occupancy sampling; each item draws from (seed, epoch, index)."""
    skip_bad_samples: bool = True
    """Check the training and validation samples once at start-up (annotation JSON, image, mask
    and depth headers and end markers) and leave bad ones out with a warning (counted in the
    run's summary.json); false: the first bad sample stops the job with its name."""
    predicted_keypoints: Optional[str] = None
    """``kpts_ref``: folder of keypoint files (docs/keypoints_format.md; ``ID.json`` or
    ``ID_keypoints.json`` per sample) holding a keypoint estimator's predictions on the
    training and validation images; stage 3 then learns to correct those instead of the
    synthetic noise (``model.kpts_ref.noise`` stays for hands without a usable prediction).
    None: synthetic noise only."""
    predicted_max_px: float = _range(40.0, 0.0, None)
    """A predicted hand whose mean 2D distance from the ground truth's keypoints exceeds this
    (pixels) is not used (it lies on the other hand or on nothing)."""


@dataclass
class EncoderConfig:
    """The image encoder (a ResNet-style backbone written in the package, no torchvision)."""

    depth: int = _choice(18, 10, 34, 50)
    """Backbone depth: 10, 18, 34 (basic blocks) or 50 (bottlenecks, the original's ResNet-50)."""
    width: int = _range(64, 8, 256)
    """Channels of the first stage (64 for a standard ResNet; smaller for CPU-sized variants)."""
    head_channels: int = _range(128, 8, 512)
    """Channels of the two upsampling heads (heatmaps; masks and parts) at 64 x 64."""
    feature_channels: int = _range(32, 4, 512)
    """Channels of the query feature map made from both heads' last maps."""
    image_size: int = _range(256, 32, 2048)
    """Side of the square input image, pixels (a multiple of 32); the heads' maps are
    image_size / 4 (64 for 256) and layer4 is image_size / 32."""
    skips: bool = False
    """Lateral connections from the backbone (S/16, S/8, S/4) into both upsampling heads (a
    feature pyramid); the keypoint estimator's CPU config uses them (faster 2D learning)."""
    weights: Optional[str] = None
    """Optional file with encoder weights to load at construction."""


@dataclass
class InitOccConfig:
    """Stage 1: per-hand canonical occupancy (HALO part MLPs + query-image attention)."""

    use_image: bool = True
    """False: the keypoint-only HALO baseline (no image feature)."""
    hidden: int = _range(64, 8, 1024)
    """Width of the part MLPs."""
    point_dim: int = _range(16, 1, 256)
    """Output width of the point MLP; the point token is [query xyz, point MLP] (3 + point_dim)."""
    patch_grid: int = _range(4, 1, 64)
    """Patches per side of the image feature map for the query-image attention (4 -> 16 tokens)."""
    heads: int = _range(2, 1, 16)
    """Attention heads of the query-image attention."""
    dropout: float = _range(0.01, 0.0, 1.0)
    """Dropout in the attention blocks and point MLP."""
    threshold: float = _range(0.5, 0.0, 1.0)
    """Occupancy probability threshold for IoU and meshes."""
    loss: str = _choice("mse", "bce")
    """Occupancy loss per hand: mse (the original's, on probabilities) or bce (on the max logit)."""
    aux_weight: float = _range(0.0, 0.0, None)
    """Weight of the auxiliary 2D loss on the encoder's heads (keypoint heatmaps, amodal hand
    masks); 0 disables it (the original starts from a pretrained encoder instead)."""
    coord_scale: float = _range(1.0, 1e-3, 1e3)
    """Multiplier of the canonical coordinates fed to the part MLPs (1: HALO's unit of 0.4 m,
    where a finger is about 0.05 wide). Training from scratch converges much faster with inputs
    of order 1 (10: a unit of 4 cm); the CPU configs use 10."""
    init_decoders: Optional[str] = None
    """Stage-1 run folder or checkpoint (e.g. a keypoint-only ``init_occ_halo_cpu`` run) whose
    part decoders initialise this model's, both hands (the image-feature rows of layer 2 start
    at zero), as the original initialised stage 1 from HALO's weights. Read at the start of a
    fresh training run only."""


@dataclass
class RefOccConfig:
    """Stage 2: two-hand occupancy refinement in the posed camera frame (reference section 2.2).

    The image encoder is ``model.encoder`` (with a global code); it starts from the stage-1
    encoder's weights wherever names and shapes match."""

    init_occ: Optional[str] = None
    """Stage-1 run folder (its best checkpoint, else its last) or checkpoint file; frozen inside
    stage 2. Required to build stage 2 (give it on the command line)."""
    num_anchors: int = _range(512, 16, 4096)
    """Anchor points per hand sampled on the stage-1 surface."""
    threshold: float = _range(0.45, 0.0, 1.0)
    """Occupancy probability threshold for IoU and meshes."""
    penetration_weight: float = _range(0.001, 0.0, None)
    """Weight of the penetration term (a sum over points, as in the original)."""
    loss: str = _choice("mse", "bce")
    """Occupancy loss per hand: mse (the original's, on probabilities) or bce (on the refined logit)."""
    anchor_bone_samples: int = _range(3, 1, 64)
    """Start points per skeleton segment (20 bones + 3 palm segments) for the anchor rays."""
    anchor_rays: int = _range(12, 1, 256)
    """Rays cast from each start point (fixed directions, rotated per start point)."""
    anchor_ray_length: float = _range(0.04, 0.001, 1.0)
    """Length of each anchor ray, metres."""
    anchor_ray_steps: int = _range(6, 1, 256)
    """Stage-1 evaluations along each ray (even spacing) to find its first threshold crossing."""
    anchor_bisections: int = _range(4, 0, 32)
    """Bisection steps refining each crossing (then one secant step, no extra evaluation)."""
    encoder_layers: List[int] = _list_range([256, 128], 1, None)
    """Points kept by each transition-down of the anchor encoder (decreasing, below num_anchors)."""
    encoder_neighbors: int = _range(16, 1, 128)
    """Neighbours of the anchor encoder's local vector attention and transition-downs."""
    encoder_reduced_dim: int = _range(120, 4, 2048)
    """Anchor encoder width at the full anchor resolution."""
    encoder_dim: int = _range(256, 4, 4096)
    """Anchor encoder width after the first transition-down; also the width of the hand codes."""
    encoder_full_blocks: int = _range(3, 0, 16)
    """Full (all-pairs) vector-attention blocks at the encoder's last level."""
    query_neighbors: int = _range(9, 1, 128)
    """Nearest anchors (of the same hand) each query point attends to, plus a global token."""
    attention_dim: int = _range(200, 4, 2048)
    """Width of the query-anchor vector attention."""
    decoder_hidden: int = _range(32, 4, 1024)
    """Width of the occupancy decoder's ResNet-FC blocks."""
    decoder_blocks: int = _range(5, 1, 32)
    """ResNet-FC blocks of the occupancy decoder."""
    init_encoder: bool = True
    """Initialise the image encoder from the stage-1 encoder (tensors whose names and shapes match)."""


@dataclass
class KeypointNoiseConfig:
    """Noise added to ground-truth keypoints to train keypoint refinement (an estimator's errors)."""

    jitter_mm: float = _range(8.0, 0.0, None)
    """Standard deviation of per-joint Gaussian jitter, mm."""
    depth_bias_mm: float = _range(15.0, 0.0, None)
    """Standard deviation of a per-hand bias along the camera z axis, mm."""
    swap_prob: float = _range(0.05, 0.0, 1.0)
    """Probability per hand that two neighbouring fingers' keypoints are swapped."""
    tip_growth: float = _range(0.5, 0.0, None)
    """Relative jitter increase from the finger bases (jitter_mm) to the tips
    (jitter_mm * (1 + tip_growth)); 0: the same jitter for every joint."""
    depth_along_rays: bool = True
    """Apply the depth bias along each joint's camera ray (keeps the 2D projection); False: a
    plain z shift."""
    finger_drift_prob: float = _range(0.1, 0.0, 1.0)
    """Probability per finger of a drift error (wrong bending) growing from base to tip."""
    finger_drift_mm: float = _range(10.0, 0.0, None)
    """Standard deviation per axis of a finger drift at the fingertip, mm."""
    scale_std: float = _range(0.03, 0.0, 1.0)
    """Standard deviation of the relative hand-scale error (about the middle MCP)."""
    val_seed: int = _range(0, 0, None)
    """Validation noise of an item is drawn from a generator seeded with val_seed + its dataset
    index, so validation is the same across runs and batchings."""


@dataclass
class KptsRefConfig:
    """Stage 3: keypoint refinement from image features."""

    layers: int = _range(4, 1, 16)
    """Graph-convolution + image-attention layers."""
    patch_grid: int = _range(8, 1, 64)
    """Patches per side for the joint-image attention (8 -> 64 tokens); must divide the encoder's
    feature-map side (encoder.image_size / 4)."""
    heads: int = _range(4, 1, 16)
    """Attention heads."""
    dim: int = _range(128, 8, 2048)
    """Width of the joint tokens (and the patch tokens they attend to); divisible by heads."""
    feature_dim: int = _range(256, 4, 4096)
    """Channels of the fused image feature map (encoder stage 1 + both heads' last maps, 1x1 conv)."""
    graph_order: int = _range(2, 1, 8)
    """Chebyshev order of the skeleton graph convolutions (2: x and A x, as the original)."""
    mlp_ratio: float = _range(2.0, 0.5, 8.0)
    """Hidden width of the token MLPs relative to dim."""
    dropout: float = _range(0.01, 0.0, 1.0)
    """Dropout in the token blocks (the original used 0.01)."""
    cross_hand: bool = True
    """Joint tokens of both hands attend to each other every layer (False: the original's
    independent hands)."""
    pixel_aligned: bool = True
    """Add each joint's bilinearly sampled image feature at its projection to its token."""
    abs_weight: float = _range(0.0, 0.0, None)
    """Weight of the absolute (camera-frame, not re-centred) MSE term, relative to the
    middle-MCP-relative MSE."""
    freeze_encoder: bool = False
    """Keep the image encoder fixed (e.g. loaded from encoder.weights)."""
    noise: KeypointNoiseConfig = field(default_factory=KeypointNoiseConfig)


@dataclass
class KptsEstConfig:
    """Keypoint estimator from images alone (DIR-style decoupled iterative refinement, HDR's
    amodal and visible masks); ``docs/estimator.md``."""

    iterations: int = _range(3, 1, 8)
    """Refinement iterations (joint space, then 2D feature space); each one is supervised."""
    dim: int = _range(128, 8, 2048)
    """Width of the joint features (3D joint-feature space); divisible by heads."""
    feature_dim: int = _range(64, 4, 1024)
    """Channels of the per-hand 2D visual feature maps (image side / 4)."""
    graph_layers: int = _range(2, 0, 16)
    """Skeleton graph residual blocks per iteration (intra-hand)."""
    graph_order: int = _range(2, 1, 8)
    """Chebyshev order of the graph convolutions."""
    attention_layers: int = _range(1, 0, 16)
    """Attention blocks over both hands' 42 joint features per iteration (inter-hand)."""
    heads: int = _range(4, 1, 16)
    """Attention heads."""
    mlp_ratio: float = _range(2.0, 0.5, 8.0)
    """FFN width of the attention blocks relative to dim."""
    dropout: float = _range(0.0, 0.0, 1.0)
    """Dropout in the joint-space blocks."""
    conv_blocks: int = _range(1, 1, 8)
    """Residual 3x3 conv blocks enhancing each hand's 2D map per iteration."""
    splat_sigma: float = _range(1.5, 0.25, 16.0)
    """Gaussian radius (feature-map pixels) with which joint features are projected back onto
    the per-hand 2D maps."""
    heatmap_sigma: float = _range(1.0, 0.25, 16.0)
    """Radius (feature-map pixels) of the Gaussian target distribution of the heatmap loss."""
    loss_2d: float = _range(0.1, 0.0, None)
    """Weight of the 2D keypoint loss (mean Euclidean error, pixels)."""
    loss_heatmap: float = _range(1.0, 0.0, None)
    """Weight of the heatmap loss (KL divergence to a Gaussian around the true joint)."""
    loss_3d: float = _range(0.1, 0.0, None)
    """Weight of the root-relative 3D loss (mean Euclidean error, mm)."""
    loss_rel: float = _range(0.02, 0.0, None)
    """Weight of the relative-translation loss (left minus right wrist, Euclidean error, mm)."""
    loss_mask: float = _range(1.0, 0.0, None)
    """Weight of the amodal + visible mask losses (binary cross-entropy)."""
    loss_presence: float = _range(0.1, 0.0, None)
    """Weight of the hand-presence loss (binary cross-entropy)."""
    presence_threshold: float = _range(0.5, 0.0, 1.0)
    """Presence probability above which a hand counts as present."""
    default_focal_factor: float = _range(1.2, 0.1, 20.0)
    """Focal length assumed for plain images without a camera, times the longer image side."""
    passes: int = _range(1, 1, 2)
    """Image passes when estimating from images (``KeypointPipeline``): 1, or 2 (again on a crop
    around the joints found; for converged estimators: an unconverged one's huddled joints make
    the crop zoom into part of the hands, docs/estimator.md)."""
    prior_weight: float = _range(4.0, 0.0, None)
    """Weight of the predicted relative translation in the absolute placement (joints' worth)."""
    freeze_encoder: bool = False
    """Keep the image encoder fixed (e.g. loaded from encoder.weights)."""
    augment: bool = True
    """Augment training batches inside the model's forward (training mode only)."""
    aug_scale_range: List[float] = _list_range([0.8, 1.25], 0.1, 10.0, ascending=True)
    """Zoom factors (log-uniform)."""
    aug_rotation_deg: float = _range(30.0, 0.0, 180.0)
    """Largest in-plane rotation (a camera roll; 3D targets rotate with it), degrees."""
    aug_translate: float = _range(0.08, 0.0, 1.0)
    """Largest shift per axis, fraction of the image side."""
    aug_truncation_prob: float = _range(0.15, 0.0, 1.0)
    """Probability of a shift that pushes part of the hands out of the image."""
    aug_truncation_range: List[float] = _list_range([0.05, 0.35], 0.0, 1.0, ascending=True)
    """Fraction of the hands' box pushed out of the image when truncating."""
    aug_color: float = _range(0.3, 0.0, 1.0)
    """Brightness, contrast and saturation factors in [1 - aug_color, 1 + aug_color]."""
    aug_hue: float = _range(0.05, 0.0, 0.5)
    """Largest hue rotation, fraction of a turn."""
    aug_blur_prob: float = _range(0.3, 0.0, 1.0)
    """Probability of a Gaussian blur."""
    aug_blur_sigma: List[float] = _list_range([0.3, 1.5], 0.0, 20.0, ascending=True)
    """Blur sigma range, pixels."""
    aug_noise_std: float = _range(0.02, 0.0, 1.0)
    """Largest standard deviation of additive pixel noise (images in [0, 1])."""
    aug_erase_prob: float = _range(0.05, 0.0, 1.0)
    """Probability of painting over one hand (its presence target becomes 0)."""


@dataclass
class ModelConfig:
    """Which model to build (``type``, a name in ``im2hands.registry.MODELS``) and its settings."""

    type: str = "init_occ"
    """Registered model name: init_occ, ref_occ, kpts_ref, kpts_est, crop_net, hand_det."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    init_occ: InitOccConfig = field(default_factory=InitOccConfig)
    ref_occ: RefOccConfig = field(default_factory=RefOccConfig)
    kpts_ref: KptsRefConfig = field(default_factory=KptsRefConfig)
    kpts_est: KptsEstConfig = field(default_factory=KptsEstConfig)
    crop_net: CropNetConfig = field(default_factory=CropNetConfig)
    hand_det: HandDetConfig = field(default_factory=HandDetConfig)


@dataclass
class TrainConfig:
    """The one trainer (``im2hands train``)."""

    out_dir: Optional[str] = None
    """Run folder; None: runs/<name>/<timestamp>."""
    init_weights: Optional[str] = None
    """A run folder or checkpoint of the same model whose weights start a fresh run (new
    optimizer, schedule and step count: fine-tuning, or a warm restart of a finished
    schedule); not read on --resume."""
    batch_size: int = _range(8, 1, None)
    """Samples per step (per process under torchrun)."""
    lr: float = _range(1e-4, 0.0, None)
    """Adam learning rate."""
    betas: List[float] = _list_range([0.9, 0.999], 0.0, 0.999999)
    """Adam betas."""
    weight_decay: float = _range(0.0, 0.0, None)
    """Adam weight decay."""
    scheduler: str = "none"
    """Learning-rate schedule: none, step or cosine."""
    step_size: int = _range(5000, 1, None)
    """StepLR period in steps (scheduler=step)."""
    gamma: float = _range(0.2, 0.0, 1.0)
    """StepLR factor (scheduler=step)."""
    max_steps: int = _range(10000, 1, None)
    """Training stops after this many steps."""
    max_minutes: Optional[float] = _range(None, 0.0, None)
    """Training also stops (after a checkpoint) after this many minutes of wall time."""
    val_every: int = _range(1000, 1, None)
    """Validate every this many steps (and at the end)."""
    val_split: str = "val"
    """Validation split name."""
    val_samples: int = _range(64, 1, None)
    """Validation items (the first ones of the split, fixed)."""
    val_points: int = _range(4096, 1, None)
    """Uniform IoU points per hand and validation item (fixed seed)."""
    checkpoint_every: int = _range(1000, 1, None)
    """Write the last checkpoint every this many steps."""
    log_every: int = _range(20, 1, None)
    """Print one log line every this many steps."""
    num_workers: int = _range(2, 0, 64)
    """DataLoader worker processes."""
    device: str = "auto"
    """auto (cuda when present), cpu, cuda or cuda:N."""
    amp: bool = True
    """Mixed precision (bf16 autocast) on CUDA; ignored on CPU."""
    grad_clip: Optional[float] = _range(None, 1e-6, None)
    """Clip the gradient norm to this value (None: no clipping)."""
    tensorboard: bool = True
    """Also write TensorBoard events when tensorboard is installed."""


@dataclass
class ExperimentConfig:
    """The whole resolved config of one job; written as config.yaml into every output folder."""

    name: str = "default"
    """Experiment name (used in output folder names)."""
    seed: int = _range(0, 0, 2**32 - 1)
    """Global random seed."""
    hand_model: HandModelConfig = field(default_factory=HandModelConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
