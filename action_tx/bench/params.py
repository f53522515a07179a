"""Parameter counts of the heads at the paper's sizes.

    python tools/benchmark.py --suite=params

action_transformer.txt §4.2: "our Action Transformer head implementation actually has 2.3M
fewer parameters than the I3D head in the LowRes QPr case". This suite builds `i3d`, `tx`
(LowRes and HighRes) and `tx_i3d` at the paper's sizes and compares.

Paper sizes: a 64x400x400 clip gives a Mixed_4f trunk map of [16, 25, 25, 832] (§3.1, stride
4 in time and 16 in space); RoI tubes are [16, 7, 7, 832] (§3.4, 7x7 ST-RoIPool); Tx head
2 heads x 3 layers, D = 128 (§3.5); 80 AVA classes for training (§4.1), 60 for evaluation.
Each head is called once (inference mode) on dummy inputs with ONE clip and ONE RoI (counts do
not depend on B or N), which creates every weight; then `count_params()` counts them all. The
"trainable" column leaves out the BatchNorm moving statistics of the I3D tail, which the
optimizer does not update; the paper does not say which of the two it counts.
"""

import sys
import time

import action_tx  # noqa: F401  (sets TF_ENABLE_ONEDNN_OPTS before TF starts)
import keras
import numpy as np
import tensorflow as tf

from action_tx.heads.action_transformer import ActionTransformerHead
from action_tx.heads.base import HeadInputs
from action_tx.heads.i3d_head import I3DHead
from action_tx.heads.tx_i3d import TxI3DHead

# Mixed_4f of Inception-I3D on a 64x400x400 clip, and the paper's RoI size.
PAPER_CHANNELS = 832
PAPER_TRUNK_MAP = (16, 25, 25)
PAPER_ROI_SIZE = 7
PAPER_CLAIM = 2.3e6  # §4.2: I3D head minus LowRes Tx head
TX_PAPER = dict(num_heads=2, num_layers=3, hidden_size=128, dropout=0.3)


def dummy_inputs(
    channels: int = PAPER_CHANNELS, trunk_map=PAPER_TRUNK_MAP, roi_size: int = PAPER_ROI_SIZE
) -> HeadInputs:
    """Zero `HeadInputs` for one clip with one RoI: features [1, T', H', W', C], rois [1, 1, 4]
    (the whole frame), roi_mask [1, 1] true, roi_features [1, 1, T', S, S, C]."""
    t, h, w = trunk_map
    return HeadInputs(
        features=tf.zeros([1, t, h, w, channels]),
        rois=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        roi_mask=tf.ones([1, 1], tf.bool),
        roi_features=tf.zeros([1, 1, t, roi_size, roi_size, channels]),
    )


def count_params(head: keras.layers.Layer, inputs: HeadInputs):
    """(all weights, trainable weights) of `head` after one inference call on `inputs`."""
    head(inputs, training=False)
    trainable = sum(int(np.prod(w.shape)) for w in head.trainable_weights)
    return head.count_params(), trainable


def head_counts(
    num_classes: int,
    channels: int = PAPER_CHANNELS,
    trunk_map=PAPER_TRUNK_MAP,
    roi_size: int = PAPER_ROI_SIZE,
    width_multiplier: float = 1.0,
    tx_options=None,
    log=None,
):
    """{name: (all, trainable)} for `i3d`, `tx` LowRes, `tx` HighRes and `tx_i3d` (HighRes
    classifier, as in the paper's best model) built for `channels`-channel trunk maps."""
    tx_options = dict(TX_PAPER if tx_options is None else tx_options)
    inputs = dummy_inputs(channels, trunk_map, roi_size)
    heads = {
        "i3d": lambda: I3DHead(num_classes, width_multiplier=width_multiplier),
        "tx LowRes": lambda: ActionTransformerHead(
            num_classes, query_mode="lowres", return_attention=False, **tx_options
        ),
        "tx HighRes": lambda: ActionTransformerHead(
            num_classes, query_mode="highres", return_attention=False, **tx_options
        ),
        "tx_i3d": lambda: TxI3DHead(
            num_classes,
            width_multiplier=width_multiplier,
            query_mode="highres",
            return_attention=False,
            **tx_options,
        ),
    }
    counts = {}
    for index, (name, make) in enumerate(heads.items()):
        start = time.perf_counter()
        counts[name] = count_params(make(), inputs)
        if log is not None:
            log(
                f"  [{index + 1}/{len(heads)}] {name}: {counts[name][0]:,} parameters "
                f"({time.perf_counter() - start:.1f} s)"
            )
    return counts


def _log(message):
    print(message, file=sys.stderr, flush=True)


def run(out_dir: str, preset: str, quick: bool) -> str:
    """Markdown report. `out_dir`, `preset` and `quick` are unused: the counts are exact and
    need no data."""
    del out_dir, preset, quick
    lines = [
        "# Head parameter counts at the paper's sizes",
        "",
        f"Trunk map [{', '.join(map(str, PAPER_TRUNK_MAP))}, {PAPER_CHANNELS}] (Mixed_4f of "
        f"a 64x400x400 clip), RoI tubes [{PAPER_TRUNK_MAP[0]}, {PAPER_ROI_SIZE}, "
        f"{PAPER_ROI_SIZE}, {PAPER_CHANNELS}], I3D tail at width 1.0, Tx 2 heads x 3 "
        f"layers, D = 128 (other Tx sizes: the head's defaults). 'all' includes the I3D "
        f"tail's BatchNorm moving statistics; 'trainable' does not.",
        "",
    ]
    for num_classes in (80, 60):
        _log(f"params: {num_classes} classes")
        counts = head_counts(num_classes, log=_log)
        lines += [f"## {num_classes} classes", "", "| head | all | trainable |", "|---|---:|---:|"]
        lines += [f"| {name} | {a:,} | {t:,} |" for name, (a, t) in counts.items()]
        diff_all = counts["i3d"][0] - counts["tx LowRes"][0]
        diff_trainable = counts["i3d"][1] - counts["tx LowRes"][1]
        lines += [
            "",
            f"i3d - tx LowRes: {diff_all:,} (all), {diff_trainable:,} (trainable); "
            f"paper §4.2: about {PAPER_CLAIM / 1e6:.1f}M fewer "
            f"(ours {diff_all / 1e6:.2f}M / {diff_trainable / 1e6:.2f}M).",
            "",
        ]
    return "\n".join(lines)
