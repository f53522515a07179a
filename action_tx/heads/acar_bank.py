"""ACAR's Actor-Context Feature Bank as the head reads it (acar_net.txt §3.3, eq. 5).

`Bank` holds a bank's numpy arrays (`action_tx.acfb.load_bank` reads one from its folder;
`action_tx.acfb.extract_bank` writes it), `BankTable` the same arrays as TF variables read by
keyframe index. `ACARHead.set_bank` takes `Bank`s: the head never reads files.
"""

from typing import List, NamedTuple

import numpy as np
import tensorflow as tf


class Bank(NamedTuple):
    """A loaded bank (numpy). K keyframes, P persons, relation maps h x w x d.

    maps float16 [K, P, h, w, d]; mask bool [K, P]; video_index int32 [K] (-1: keyframe never
    written); timestamp int32 [K]; video_id: list of K str ("" when not written).
    """

    maps: np.ndarray
    mask: np.ndarray
    video_index: np.ndarray
    timestamp: np.ndarray
    video_id: List[str]


class BankTable(tf.Module):
    """A loaded bank as non-trainable TF variables, read by keyframe index.

    A `tf.Module`, not Keras variables: the head's `variables` (hence checkpoints, see
    `action_tx.checkpointing.checkpointable`) never hold it, so a checkpoint trained with the
    training split's bank restores into a model that carries the evaluation split's bank.
    """

    def __init__(self, bank: Bank, name: str = "acfb_table"):
        super().__init__(name=name)
        with tf.init_scope():
            self.maps = tf.Variable(bank.maps, trainable=False, name="maps")
            self.mask = tf.Variable(bank.mask, trainable=False, name="mask")
            self.video_index = tf.Variable(bank.video_index, trainable=False, name="video_index")
            self.timestamp = tf.Variable(bank.timestamp, trainable=False, name="timestamp")

    @property
    def map_shape(self):
        return self.maps.shape[2:].as_list()

    def read(self, keyframe_index, video_index, timestamp, window: int):
        """L of keyframes keyframe_index + k, k in [-window, window], kept when written, of the
        same video and |dt| <= window seconds (keyframes lie >= 1 s apart, so this covers every
        keyframe of [t - w, t + w]).

        keyframe_index, video_index, timestamp: int [B].
        Returns maps float32 [B, 2w+1, P, h, w, d] and mask bool [B, 2w+1, P].
        """
        offsets = tf.range(-window, window + 1, dtype=tf.int32)
        idx = tf.cast(keyframe_index, tf.int32)[:, None] + offsets[None]  # [B, 2w+1]
        size = tf.shape(self.video_index)[0]
        inside = (idx >= 0) & (idx < size)
        safe = tf.clip_by_value(idx, 0, size - 1)
        same_video = tf.gather(self.video_index, safe) == tf.cast(video_index, tf.int32)[:, None]
        dt = tf.abs(tf.gather(self.timestamp, safe) - tf.cast(timestamp, tf.int32)[:, None])
        valid = inside & same_video & (dt <= window)
        mask = tf.gather(self.mask, safe) & valid[..., None]
        maps = tf.cast(tf.gather(self.maps, safe), tf.float32)
        maps = maps * tf.cast(mask, tf.float32)[..., None, None, None]
        return maps, mask
