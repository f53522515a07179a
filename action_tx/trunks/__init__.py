"""3D-conv trunks. `i3d.InceptionI3D` is the Inception-I3D of the kinetics-i3d release."""

import os

# TF's oneDNN kernels are off by default on CPUs without AVX512-VNNI/AMX (like ours), and TF's
# own Conv3DBackpropFilter is then ~100x slower (a 7x7x7 stem's filter gradient: 35 s vs 0.04 s).
# The variable is read when TF starts, so this only helps when TF is not imported yet.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
