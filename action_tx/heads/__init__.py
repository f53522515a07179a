"""Relational heads. Chosen by name from the plain dict `HEADS` (no registry, no import side
effects); every head takes `HeadInputs` and returns `HeadOutputs` (see `base.py`)."""

from action_tx.heads.acar import ACARHead
from action_tx.heads.action_transformer import ActionTransformerHead
from action_tx.heads.aia import AIAHead
from action_tx.heads.hgrnn import HGRNNHead
from action_tx.heads.i3d_head import I3DHead
from action_tx.heads.linear import LinearHead
from action_tx.heads.stage import StageHead
from action_tx.heads.tx_i3d import TxI3DHead

HEADS = {
    "linear": LinearHead,
    "i3d": I3DHead,
    "tx": ActionTransformerHead,
    "tx_i3d": TxI3DHead,
    "acar": ACARHead,
    "aia": AIAHead,
    "stage": StageHead,
    "hgrnn": HGRNNHead,
}
