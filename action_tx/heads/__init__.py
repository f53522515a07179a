"""Relational heads. Chosen by name from the plain dict `HEADS`: name -> (head class, config
class) (no registry, no import side effects). Every head takes `HeadInputs` and returns
`HeadOutputs` (see `base.py`); its config (a frozen dataclass in the head's own module, or in
`<head>_config.py` beside it; the paper's defaults) gives its keyword arguments
(`head_config.HeadConfig`)."""

from action_tx.heads.acar import ACARHead, ACARHeadConfig
from action_tx.heads.action_transformer import ActionTransformerConfig, ActionTransformerHead
from action_tx.heads.aia import AIAHead
from action_tx.heads.aia_config import AIAHeadConfig
from action_tx.heads.hgrnn import HGRNNHead, HGRNNHeadConfig
from action_tx.heads.i3d_head import I3DHead, I3DHeadConfig
from action_tx.heads.linear import LinearHead, LinearHeadConfig
from action_tx.heads.stage import StageHead, StageHeadConfig
from action_tx.heads.tx_i3d import TxI3DHead, TxI3DHeadConfig

HEADS = {
    "linear": (LinearHead, LinearHeadConfig),
    "i3d": (I3DHead, I3DHeadConfig),
    "tx": (ActionTransformerHead, ActionTransformerConfig),
    "tx_i3d": (TxI3DHead, TxI3DHeadConfig),
    "acar": (ACARHead, ACARHeadConfig),
    "aia": (AIAHead, AIAHeadConfig),
    "stage": (StageHead, StageHeadConfig),
    "hgrnn": (HGRNNHead, HGRNNHeadConfig),
}
