"""action_tx: spatio-temporal action detection (AVA) in TensorFlow / Keras 3."""

import os

# TF reads these when it starts, so they must be set before the first `import tensorflow`:
# oneDNN kernels are off by default on CPUs without AVX512-VNNI/AMX (like ours), and TF's own
# Conv3DBackpropFilter is then ~100x slower (a 7x7x7 stem's filter gradient: 35 s vs 0.04 s).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
