"""The detectors whose train step `action_tx.bench.efficiency` measures: a run list (data).

Each run: `model` (ModelConfig fields), `data` (the synthetic batch: batch_size, num_frames,
image_size, num_classes, max_boxes = padded boxes per clip, persons = real ones among them,
max_objects), `train` (optimizer, learning_rate, momentum, weight_decay, clip_norm).
RUNS are the paper sizes and the demo model; QUICK_RUNS tiny sizes for `--quick` and tests.
"""

import numpy as np

# (a) The demo model: configs/demo.flags (tests/bench/test_efficiency.py keeps them equal).
# 15 classes: the synthetic presets' label map (action_tx.data.synthetic_labels.CLASSES).
DEMO = dict(
    name="demo",
    description="demo model (configs/demo.flags): i3d_tiny, tx head, RPN, 8x112x112, batch 4",
    model=dict(
        trunk="i3d_tiny",
        freeze_bn=True,
        head="tx",
        proposals="rpn",
        anchor_sizes=(16, 32, 64, 96),
        rpn_filters=64,
        post_nms_top_k=50,
        num_roi_samples=32,
    ),
    data=dict(batch_size=4, num_frames=8, image_size=112, num_classes=15, max_boxes=8, persons=4),
    train=dict(optimizer="adamw", learning_rate=1e-3, weight_decay=1e-4, clip_norm=10.0),
)

# (b) The paper-size Action Transformer detector (configs/ava_tx.flags, batch 1 per step):
# full I3D to Mixed_4f, RPN R = 300, Tx head 2 heads x 3 layers D = 128, SGD momentum 0.9.
_TX_PAPER = dict(
    model=dict(
        trunk="i3d",
        freeze_bn=True,
        head="tx",
        head_options=dict(num_heads=2, num_layers=3, hidden_size=128, query_mode="highres"),
        proposals="rpn",
        anchor_sizes=(64, 128, 256, 512),
        post_nms_top_k=300,
    ),
    train=dict(optimizer="sgd", learning_rate=0.1, momentum=0.9),
)
TX_PAPER_224 = dict(
    name="tx_paper_224",
    description="paper-size Tx detector: I3D, tx head, RPN 300, 64x224x224, batch 1, SGD",
    data=dict(batch_size=1, num_frames=64, image_size=224, num_classes=60, max_boxes=8, persons=3),
    **_TX_PAPER,
)
TX_PAPER_400 = dict(
    TX_PAPER_224,
    name="tx_paper_400",
    description="paper-size Tx detector: I3D, tx head, RPN 300, 64x400x400, batch 1, SGD",
    data=dict(TX_PAPER_224["data"], image_size=400),
)

# (c) The paper-size AIA detector (configs/ava_aia.flags, batch 1 per step): I3D to Mixed_5c,
# AIA P,O,M,P,O,M dense, L = 30, AMU, ground-truth persons, 16 object boxes, 32x256x256. The
# memory tables are sized for AVA v2.2's train split (211,000 keyframes, float16: 2.2 GB each).
AIA_PAPER = dict(
    name="aia_paper",
    description="paper-size AIA detector: I3D to Mixed_5c, aia P,O,M,P,O,M dense, L=30, "
    "memory 211,000 keyframes float16, 32x256x256, batch 1, SGD",
    model=dict(
        trunk="i3d",
        trunk_endpoint="Mixed_5c",
        freeze_bn=True,
        head="aia",
        head_options=dict(
            blocks="P,O,M,P,O,M",
            structure="dense",
            memory_window=30,
            use_amu=True,
            temporal_position=True,
            memory_dtype="float16",
            memory_size=211000,
            dropout=0.2,
        ),
        proposals="gt",
    ),
    data=dict(
        batch_size=1,
        num_frames=32,
        image_size=256,
        num_classes=60,
        max_boxes=8,
        persons=3,
        max_objects=16,
        memory_size=211000,
    ),
    train=dict(optimizer="sgd", learning_rate=0.004, momentum=0.9),
)

RUNS = [DEMO, TX_PAPER_224, TX_PAPER_400, AIA_PAPER]

QUICK_RUNS = [
    dict(
        name="tiny_tx",
        description="tiny Tx detector: i3d_tiny, tx head (D 32, 1 layer), RPN, 4x64x64, batch 2",
        model=dict(
            trunk="i3d_tiny",
            freeze_bn=True,
            head="tx",
            head_options=dict(num_heads=1, num_layers=1, hidden_size=32),
            proposals="rpn",
            anchor_sizes=(16, 32),
            rpn_filters=16,
            post_nms_top_k=8,
            num_roi_samples=8,
        ),
        data=dict(batch_size=2, num_frames=4, image_size=64, num_classes=5, max_boxes=4, persons=2),
        train=dict(optimizer="adamw", learning_rate=1e-3, weight_decay=1e-4, clip_norm=10.0),
    ),
    dict(
        name="tiny_aia",
        # Mixed_4f, not the paper's Mixed_5c: fewer layers to trace in the tests.
        description="tiny AIA detector: i3d_tiny, aia P,O,M (D 32, L 2), gt boxes, 4x64x64",
        model=dict(
            trunk="i3d_tiny",
            freeze_bn=True,
            head="aia",
            head_options=dict(
                blocks="P,O,M",
                memory_window=2,
                memory_size=64,
                memory_dtype="float16",
                hidden_size=32,
                dropout=0.0,
            ),
            proposals="gt",
        ),
        data=dict(
            batch_size=1,
            num_frames=4,
            image_size=64,
            num_classes=5,
            max_boxes=4,
            persons=2,
            max_objects=2,
            memory_size=64,
        ),
        train=dict(optimizer="sgd", learning_rate=0.01, momentum=0.9),
    ),
]


def find(names, quick: bool = False) -> list:
    """The runs named in `names` (None: all of RUNS, or QUICK_RUNS when `quick`); raises
    ValueError for an unknown name."""
    table = {r["name"]: r for r in RUNS + QUICK_RUNS}
    if not names:
        return list(QUICK_RUNS if quick else RUNS)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown perf runs {unknown}; known: {', '.join(table)}")
    return [table[n] for n in names]


def _boxes(rng, shape) -> np.ndarray:
    """Random valid normalized yxyx boxes, sides 0.2-0.4 of the frame."""
    y1x1 = rng.uniform(0.0, 0.6, shape + (2,))
    size = rng.uniform(0.2, 0.4, shape + (2,))
    return np.concatenate([y1x1, y1x1 + size], -1).astype(np.float32)


def make_batch(data: dict, seed: int = 0) -> dict:
    """A training batch dict (numpy) of `data`'s sizes: clip float32 [B, T, H, W, 3] in
    [-1, 1], boxes [B, M, 4] (the first `persons` real, box_mask [B, M]), multi-hot labels
    [B, M, C] (each real box at least one class), objects [B, O, 4] + object_mask when
    max_objects, keyframe_index / video_index / timestamp [B] int32 (keyframe_index below
    memory_size, when given)."""
    rng = np.random.default_rng(seed)
    b, t, s = data["batch_size"], data["num_frames"], data["image_size"]
    m, c, persons = data["max_boxes"], data["num_classes"], data["persons"]
    mask = np.arange(m)[None].repeat(b, 0) < persons
    labels = rng.uniform(size=(b, m, c)) < 0.2
    labels[:, :, 0] |= True
    batch = dict(
        clip=rng.uniform(-1, 1, (b, t, s, s, 3)).astype(np.float32),
        boxes=_boxes(rng, (b, m)) * mask[..., None],
        box_mask=mask,
        labels=(labels & mask[..., None]).astype(np.float32),
        keyframe_index=rng.integers(0, data.get("memory_size", 1000), b).astype(np.int32),
        video_index=np.zeros(b, np.int32),
        timestamp=rng.integers(902, 1798, b).astype(np.int32),
    )
    if data.get("max_objects"):
        batch["objects"] = _boxes(rng, (b, data["max_objects"]))
        batch["object_mask"] = np.ones((b, data["max_objects"]), bool)
    return batch
