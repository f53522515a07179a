"""A one-line progress bar on stderr, free of TensorFlow so tools can show it before TF loads."""
import sys


class Progress:
    """A one-line progress bar on stderr: `label [#####.....] done/total`."""

    def __init__(self, total: int, label: str, enabled: bool = True, width: int = 30):
        self.total, self.label, self.enabled, self.width, self.done = total, label, enabled, width, 0

    def update(self, n: int):
        self.done += n
        if self.enabled:
            filled = self.width * self.done // max(self.total, 1)
            sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
                             f"{self.done}/{self.total}")
            sys.stderr.flush()

    def close(self):
        if self.enabled:
            sys.stderr.write("\n")
