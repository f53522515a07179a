"""`acar`: the ACAR-Net head (acar_net.txt §3): Actor-Context-Actor Relation reasoning, with an
optional Actor-Context Feature Bank (ACFB, §3.3).

Pipeline per keyframe (§3.1-3.2):
1. Context X: trunk features averaged over time -> [B, H', W', C], reduced by a 1x1 conv (no
   bias) to C' = `reduce_size` (authors' code: 2304 -> 1024 for SlowFast R-50; here default
   2 * hidden_size). Actor A_i: the same reduction on the RoI tube, averaged over time and
   max-pooled over the S x S cells (§3.1: "RoIAlign ... followed by spatial max pooling").
   In feature mode (tube [1, 1, 1]) that is the stored vector, reduced.
2. First-order relations F_i (ACRN, `ActorContextEncoder`): A_i tiled over X, concatenated,
   convolutions -> [B, N, h, w, d] (h = w = 3 for H' = 7).
3. High-order operator: `relation="hr2o"` stacks `num_blocks` modified non-local blocks
   (`HR2OBlock`, eq. 1-2; attention over the valid actors of the keyframe at each location);
   `relation="rn"` the Relation Network (eq. 3-4, one operator; `num_blocks` unused).
4. Classifier (§3.2 "a single fully-connected layer with a non-linearity"; the authors' code):
   ReLU(FC(A_i)) concatenated with the spatial average of F'_i, dropout, FC -> logits. The
   final FC has a bias (the paper is silent; rare classes need one).
   `--pose_softmax` acts in the loss and post-processing (ActionDetector / FeatureActionModel
   `pose_indices`), on these logits: the head itself is agnostic.

ACFB (§3.3, eq. 5; `action_tx.acfb`): stage 1 trains this head without a bank;
`action_tx.acfb.extract_bank` (tools/extract_features.py --bank=acfb) archives every keyframe's
F maps as L. Stage 2 trains a new head with `use_bank=True`: every HR2O block takes Q from the
short-term maps and K, V from the archived L of the keyframes in [t - w, t + w] of the same
video (w = `bank_window`; the current keyframe's own archived L included, as the paper's window
is closed). The head reads no files: whoever builds the model loads the banks
(`action_tx.acfb.load_bank` / `attach_banks`) and hands them over with `set_bank(bank,
eval_bank)`; they are no config (arrays of a split, not options) and no Keras variables, so
neither `get_config` nor checkpoints hold them. In training the head reads `bank` (the training
split's), in inference `eval_bank` (the evaluation split's, keyframe indices of that split; None:
`bank`): the trainer's periodic evaluation and tools/eval.py (which builds the model with both
banks from the flags and restores the checkpoint) both score with the evaluation bank.

No actor (background) logit: ACAR classifies the actions of an off-the-shelf person detector's
boxes (§3.1, §4.1: Faster R-CNN detections with score > 0.85); its classifier has only the
action classes, so the proposal / detector person score is kept as is.

Padded RoIs (roi_mask false) are never keys, so they cannot change a real RoI; their logits are
0. Inputs (`HeadInputs`): features [B, T', H', W', C], roi_features [B, N, T', S, S, C],
roi_mask [B, N]; with a bank also keyframe_index, video_index, timestamp [B].
Outputs: logits [B, N, num_classes]; attention [B, N, M, h, w] of the last HR2O block (M = N,
or (2w + 1) * P bank actors; None for "rn").
"""

import contextlib
import dataclasses
from typing import Optional

import keras
import tensorflow as tf

from action_tx.heads.acar_bank import Bank, BankTable
from action_tx.heads.acar_blocks import ActorContextEncoder, HR2OBlock, RelationNetworkBlock
from action_tx.heads.base import ActionHead, HeadInputs, HeadOutputs
from action_tx.heads.head_config import HeadConfig

RELATIONS = ("hr2o", "rn")


class _Recorder:
    """Plain holder (not tracked by Keras): first-order maps seen while `active`."""

    def __init__(self):
        self.active, self.maps = False, []


@keras.saving.register_keras_serializable(package="action_tx")
class ACARHead(ActionHead):
    """ACAR-Net head: ACRN first-order relations -> HR2O (or RN) -> classifier.

    Args:
      num_classes: action classes C.
      num_blocks: HR2O blocks (paper Table 1e: 2).
      hidden_size: d, width of the relation maps and of Q, K, V (paper: 512).
      relation: "hr2o" (modified non-local, paper default) or "rn" (Relation Network).
      dropout: before the final FC. The paper is silent; 0.2 as the authors' HR2O blocks.
      use_bank: HR2O reads keys and values from an Actor-Context Feature Bank (stage 2; the
        banks themselves are given by `set_bank`, not config); False: no bank (stage 1).
      bank_window: w, bank keyframes on each side (paper §4.2: 2w + 1 = 21 s, w = 10).
      reduce_size: C', 1x1 reduction of trunk channels (None: 2 * hidden_size, the authors'
        1024 for d = 512).
      kernel_size: k of the encoder's second conv and of the HR2O convs (authors: 3).
      block_dropout: dropout inside each HR2O block (authors' code: 0.2).
    """

    def __init__(
        self,
        num_classes: int,
        num_blocks: int = 2,
        hidden_size: int = 512,
        relation: str = "hr2o",
        dropout: float = 0.2,
        use_bank: bool = False,
        bank_window: int = 10,
        reduce_size=None,
        kernel_size: int = 3,
        block_dropout: float = 0.2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if relation not in RELATIONS:
            raise ValueError(f"ACARHead: relation={relation!r}, expected one of {RELATIONS}")
        if relation == "rn" and use_bank:
            raise ValueError("ACARHead: the feature bank (eq. 5) needs relation='hr2o'")
        self.num_classes = num_classes
        self.num_blocks = num_blocks
        self.hidden_size = hidden_size
        self.relation = relation
        self.dropout = dropout
        self.use_bank = bool(use_bank)
        self.bank_window = bank_window
        self.reduce_size = reduce_size
        self.kernel_size = kernel_size
        self.block_dropout = block_dropout
        width = reduce_size or 2 * hidden_size
        self._reduce = keras.layers.Dense(width, use_bias=False, name="conv_reduce")
        self._encoder = ActorContextEncoder(hidden_size, kernel_size, name="acrn")
        if relation == "hr2o":
            self._blocks = [
                HR2OBlock(hidden_size, kernel_size, block_dropout, name=f"hr2o_{i}")
                for i in range(num_blocks)
            ]
            self._rn = None
        else:
            self._blocks, self._rn = [], RelationNetworkBlock(hidden_size, kernel_size, name="rn")
        self._fc1 = keras.layers.Dense(hidden_size, use_bias=False, name="fc1")
        self._dropout = keras.layers.Dropout(dropout)
        self._fc2 = keras.layers.Dense(num_classes, name="cls_logits")
        self._recorder = _Recorder()
        self._train_table = self._eval_table = None
        self._banks_set = 0  # set_bank calls (`inference_state_key`)

    def set_bank(self, bank: Optional[Bank] = None, eval_bank: Optional[Bank] = None) -> None:
        """Gives a `use_bank` head its banks (`action_tx.acfb.load_bank` reads them): `bank`,
        the training split's, read in training; `eval_bank`, the evaluation split's, read in
        inference (None: `bank`). At least one. Their maps must have d = hidden_size."""
        if not self.use_bank:
            raise ValueError(
                f"ACARHead {self.name!r}: set_bank on a head built with use_bank=False"
            )
        if bank is None and eval_bank is None:
            raise ValueError(f"ACARHead {self.name!r}: set_bank needs a bank or an eval_bank")
        tables = {}
        for key, given in (("train", bank), ("eval", eval_bank)):
            if given is not None:
                tables[key] = BankTable(given, name=f"acfb_{key}_table")
                d = tables[key].map_shape[-1]
                if d != self.hidden_size:
                    raise ValueError(
                        f"ACARHead {self.name!r}: the {key} bank's maps have "
                        f"d = {d}, this head hidden_size = {self.hidden_size}"
                    )
        self._train_table = tables.get("train")
        self._eval_table = tables.get("eval", self._train_table)
        self._banks_set += 1  # new table variables: traces that read the old ones are stale

    @property
    def inference_state_key(self):
        return (self._banks_set,)

    @property
    def bank_tables(self) -> dict:
        """{"train": BankTable or None, "eval": BankTable or None}: what `set_bank` installed
        (the eval entry is the train table when no eval bank was given)."""
        return {"train": self._train_table, "eval": self._eval_table}

    @contextlib.contextmanager
    def recording(self):
        """While active, every call appends its first-order maps F [B, N, h, w, d] to the
        yielded list (`action_tx.acfb.extract_bank` archives them)."""
        self._recorder.active, self._recorder.maps = True, []
        try:
            yield self._recorder.maps
        finally:
            self._recorder.active = False

    def build(self, inputs_shape=None):
        self.built = True  # sub-layers build on the first call

    def _bank_keys(self, inputs: HeadInputs, training, maps):
        if self._eval_table is None:
            raise ValueError(
                f"ACARHead {self.name!r}: use_bank=True but no bank was given; "
                "call set_bank (action_tx.acfb.attach_banks) after building it"
            )
        table = self._train_table if training else self._eval_table
        if table is None:
            raise ValueError(
                f"ACARHead {self.name!r}: training needs the training split's "
                "bank (only an eval_bank was given)"
            )
        if inputs.keyframe_index is None or inputs.video_index is None or inputs.timestamp is None:
            raise ValueError(
                "ACARHead with a bank needs keyframe_index, video_index and timestamp in the batch"
            )
        if maps.shape[2:].as_list() != table.map_shape:
            raise ValueError(
                f"ACARHead: relation maps {maps.shape[2:].as_list()} differ from "
                f"the bank's {table.map_shape} (trunk or map size changed)"
            )
        bank, mask = table.read(
            inputs.keyframe_index, inputs.video_index, inputs.timestamp, self.bank_window
        )
        shape = tf.shape(bank)  # [B, 2w+1, P, h, w, d]
        keys = tf.reshape(bank, tf.concat([[shape[0], shape[1] * shape[2]], shape[3:]], 0))
        keys.set_shape([None, None] + table.map_shape)
        return tf.cast(keys, maps.dtype), tf.reshape(mask, [shape[0], shape[1] * shape[2]])

    def call(self, inputs: HeadInputs, training=None) -> HeadOutputs:
        context = self._reduce(tf.reduce_mean(inputs.features, axis=1))  # [B, H, W, C']
        tubes = self._reduce(inputs.roi_features)  # [B, N, T, S, S, C']
        actors = tf.reduce_max(tf.reduce_mean(tubes, axis=2), axis=[2, 3])  # [B, N, C']
        roi_mask = tf.cast(inputs.roi_mask, tf.bool)
        maps = self._encoder(actors, context)  # [B, N, h, w, d]
        if self._recorder.active:
            self._recorder.maps.append(maps)
        attention = None
        if self._rn is not None:
            maps = self._rn(actors, context, roi_mask, maps)
        else:
            if self.use_bank:
                keys, key_mask = self._bank_keys(inputs, training, maps)
            for block in self._blocks:
                if not self.use_bank:
                    keys, key_mask = maps, roi_mask  # self-attention among the keyframe's actors
                maps, attention = block(maps, keys, key_mask, training=training)
        pooled = tf.reduce_mean(maps, axis=[2, 3])
        x = tf.concat([tf.nn.relu(self._fc1(actors)), pooled], axis=-1)
        x = self._dropout(x, training=training)
        mask = tf.cast(roi_mask, x.dtype)
        logits = self._fc2(x) * mask[..., None]
        if attention is not None:
            attention = attention * tf.cast(mask, attention.dtype)[:, :, None, None, None]
        return HeadOutputs(logits=logits, attention=attention)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            num_blocks=self.num_blocks,
            hidden_size=self.hidden_size,
            relation=self.relation,
            dropout=self.dropout,
            use_bank=self.use_bank,
            bank_window=self.bank_window,
            reduce_size=self.reduce_size,
            kernel_size=self.kernel_size,
            block_dropout=self.block_dropout,
        )
        return config


@dataclasses.dataclass(frozen=True)
class ACARHeadConfig(HeadConfig):
    """Options of `ACARHead` (acar_net.txt)."""

    flag_names = {
        "acar_blocks": "num_blocks",
        "acar_dim": "hidden_size",
        "acar_relation": "relation",
        "acfb_bank_dir": "bank_dir",
        "eval_acfb_bank_dir": "eval_bank_dir",
        "acfb_window": "bank_window",
    }
    # §4.1 trains on "ground-truth boxes and predicted human boxes"; the release labels each
    # RoI from the boxes: no background samples.
    default_background_rois = False
    num_blocks: int = 2  # Table 1e: 2 HR2O blocks
    hidden_size: int = 512  # §4.1: d = 512
    relation: str = "hr2o"  # §3.2: high-order relation reasoning
    dropout: float = 0.2  # paper silent; the authors' HR2O blocks
    block_dropout: float = 0.2  # inside each HR2O block (authors' code)
    bank_dir: Optional[str] = None  # stage 2 (§3.3): the training split's bank
    eval_bank_dir: Optional[str] = None  # the bank read in inference (None: bank_dir)
    bank_window: int = 10  # §4.2: 2w + 1 = 21 s, w = 10

    def problems(self):
        if self.relation == "rn" and (self.bank_dir or self.eval_bank_dir):
            return ["acar: the feature bank needs relation=hr2o (eq. 5), not rn"]
        return []

    def head_kwargs(self, trunk=None) -> dict:
        kwargs = super().head_kwargs(trunk)
        # The head takes banks, not folders (`prepare` reads them and hands them over).
        kwargs["use_bank"] = bool(kwargs.pop("bank_dir") or kwargs.pop("eval_bank_dir"))
        kwargs.pop("eval_bank_dir", None)
        return kwargs

    def prepare(self, head) -> None:
        if self.bank_dir or self.eval_bank_dir:
            from action_tx.acfb import attach_banks  # reads the bank folders (numpy)

            attach_banks(head, self.bank_dir, self.eval_bank_dir)
