"""Helper process of tests/tools/test_train_multiworker.py (not a test): `STEPS` training-mode
calls of a tiny AIA head (P and M blocks, memory window 1, AMU) on a fixed sequence of global
batches, then its train memory tables -> the .npz path given as argv[1].

With TF_CONFIG set it runs under MultiWorkerMirroredStrategy, each replica on its slice of the
global batch (as the trainer's replica step does); without, in one process on the whole batch.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import action_tx  # noqa: E402,F401  (TF start-up options)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

STEPS, BATCH, ROIS, CHANNELS, CLASSES = 3, 4, 3, 8, 3


def global_batch(step):
    """Keyframes step * BATCH .. of one video (one per second), random tubes and labels."""
    rng = np.random.default_rng(step)
    index = np.arange(step * BATCH, (step + 1) * BATCH, dtype=np.int32)
    corner = rng.uniform(0.0, 0.5, (BATCH, ROIS, 2))
    return dict(
        roi_features=rng.normal(size=(BATCH, ROIS, 1, 2, 2, CHANNELS)).astype(np.float32),
        rois=np.concatenate([corner, corner + 0.4], -1).astype(np.float32),
        roi_mask=rng.uniform(size=(BATCH, ROIS)) < 0.8,
        roi_scores=rng.uniform(0.5, 1.0, (BATCH, ROIS)).astype(np.float32),
        roi_labels=(rng.uniform(size=(BATCH, ROIS, CLASSES)) < 0.5).astype(np.float32),
        keyframe_index=index,
        video_index=np.zeros(BATCH, np.int32),
        timestamp=index,
    )


def main(out_path):
    from action_tx.heads.aia import AIAHead
    from action_tx.heads.base import HeadInputs

    multi = "TF_CONFIG" in os.environ
    strategy = (
        tf.distribute.MultiWorkerMirroredStrategy() if multi else tf.distribute.get_strategy()
    )
    keras.utils.set_random_seed(0)

    def inputs(b):
        return HeadInputs(
            features=tf.zeros([tf.shape(b["rois"])[0], 1, 2, 2, CHANNELS]),
            rois=b["rois"],
            roi_mask=b["roi_mask"],
            roi_features=b["roi_features"],
            roi_scores=b["roi_scores"],
            keyframe_index=b["keyframe_index"],
            video_index=b["video_index"],
            timestamp=b["timestamp"],
            roi_labels=b["roi_labels"],
        )

    with strategy.scope():
        head = AIAHead(
            num_classes=CLASSES,
            blocks="P,M",
            structure="serial",
            memory_window=1,
            memory_size=STEPS * BATCH,
            hidden_size=16,
            dropout=0.0,
            memory_persons=2,
        )
        # Variables are created by a first call in cross-replica context, as the trainer does
        # (this inference call writes the eval memory, not the train memory compared).
        first = {k: tf.constant(v[:1]) for k, v in global_batch(0).items()}
        head(inputs(first), training=False)

    def replica_step(batch):
        ctx = tf.distribute.get_replica_context()
        per = BATCH // ctx.num_replicas_in_sync
        start = ctx.replica_id_in_sync_group * per
        head(inputs({k: v[start : start + per] for k, v in batch.items()}), training=True)

    step = tf.function(lambda batch: strategy.run(replica_step, args=(batch,)))
    for s in range(STEPS):
        step({k: tf.constant(v) for k, v in global_batch(s).items()})
    memory = head.memory.train
    np.savez(
        out_path,
        **{
            name: getattr(memory, name).numpy()
            for name in ("features", "mask", "video", "timestamp", "loss_tag")
        },
        current_loss=head.current_loss.numpy(),
    )


if __name__ == "__main__":
    main(sys.argv[1])
