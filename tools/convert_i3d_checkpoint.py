"""Converts a kinetics-i3d release checkpoint into our Inception-I3D weights.

    python tools/convert_i3d_checkpoint.py --checkpoint=PATH/rgb_imagenet/model.ckpt \
        --num_classes=400 --output=checkpoints/i3d

reads the TF1 checkpoint (prefix, i.e. the path without `.index`), loads it into our
`InceptionI3D` (Conv3d_1a_7x7..`--final_endpoint`), failing on any unmatched or misshapen
variable, and writes `OUTPUT/i3d_kinetics<N>`: a TF checkpoint keyed by the release names,
which `action_tx.trunks.i3d_checkpoint.restore_trunk(model, path)` loads into any cut of the
network (the Mixed_4f trunk, the Mixed_5a-5c head tail), plus `OUTPUT/i3d_kinetics<N>.txt`,
the conversion report.
"""

import os
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", None, "Release checkpoint prefix (path without .index).")
flags.DEFINE_enum("num_classes", "400", ["400", "600"], "Kinetics-400 or Kinetics-600 logits.")
flags.DEFINE_string("output", None, "Output folder.")
flags.DEFINE_string(
    "final_endpoint",
    "Logits",
    "Last endpoint converted; the default keeps everything (trunk, tail, logits).",
)
flags.mark_flags_as_required(["checkpoint", "output"])


def main(argv):
    del argv
    from action_tx.trunks import i3d_checkpoint  # imports TF: after flag parsing
    from action_tx.trunks.i3d import ENDPOINTS, InceptionI3D

    if FLAGS.final_endpoint not in ENDPOINTS:
        sys.exit(f"error: --final_endpoint={FLAGS.final_endpoint} is not one of {ENDPOINTS}")
    num_classes = int(FLAGS.num_classes)
    model = InceptionI3D(final_endpoint=FLAGS.final_endpoint, num_classes=num_classes)
    try:
        report = i3d_checkpoint.load_kinetics_checkpoint(model, FLAGS.checkpoint, num_classes)
    except (i3d_checkpoint.CheckpointMismatchError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    prefix = os.path.join(FLAGS.output, f"i3d_kinetics{num_classes}")
    i3d_checkpoint.save_trunk(model, prefix)
    lines = [
        f"source: {FLAGS.checkpoint}",
        f"endpoints: Conv3d_1a_7x7..{FLAGS.final_endpoint}",
        f"num_classes: {num_classes}",
        report.summary(),
        "",
        "loaded:",
        *report.loaded,
        "",
        "skipped (beyond final endpoint):",
        *report.beyond_model,
        "",
        "skipped (optimizer state):",
        *report.optimizer_state,
    ]
    with open(prefix + ".txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    print(
        f"{report.summary()}\nwritten: {prefix} (restore with "
        f"action_tx.trunks.i3d_checkpoint.restore_trunk) and {prefix}.txt"
    )


if __name__ == "__main__":
    app.run(main)
