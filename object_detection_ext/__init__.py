"""Extensions of TF Model Garden detection ops: pure TF functions + thin Keras 3 wrappers."""

import os

# See action_tx/__init__.py: must precede the first TensorFlow import.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
