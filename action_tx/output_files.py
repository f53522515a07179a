"""Output files that appear all at once: each written under a hidden temporary name beside its
final path (`.NAME.PID.partial`, matched by no `*.mp4`/`*.csv`/`*.json` glob) and renamed when
every output is complete, so an output path holds either a complete file or what it held before.
The `.NAME.PID.partial` a killed process leaves is removed by the next run writing NAME. Used by
`tools/detect.py`."""

import os


def remove_stale_partials(folder: str, base: str):
    """Removes `.BASE.PID.partial` files of processes no longer alive on this machine (left
    by a SIGKILL), so that they do not pile up."""
    prefix = f".{base}."
    for name in os.listdir(folder):
        pid = name[len(prefix) : -len(".partial")]
        if not (name.startswith(prefix) and name.endswith(".partial") and pid.isdigit()):
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            try:
                os.remove(os.path.join(folder, name))
            except FileNotFoundError:
                pass
        except PermissionError:  # alive, another user's
            pass


class Outputs:
    """The run's output files, each written to a temporary name in its own folder and renamed
    to its final path by `commit` once every output is complete."""

    def __init__(self, paths: dict):
        self.paths = {name: path for name, path in paths.items() if path}
        self.written = []
        self._temps = {}

    def temp(self, name: str) -> str:
        """Temporary path for output `name` (a hidden `.BASE.PID.partial` beside it)."""
        if name not in self._temps:
            folder, base = os.path.split(os.path.abspath(self.paths[name]))
            remove_stale_partials(folder, base)
            self._temps[name] = os.path.join(folder, f".{base}.{os.getpid()}.partial")
        return self._temps[name]

    def commit(self):
        for name, temp in list(self._temps.items()):
            os.replace(temp, self.paths[name])
            del self._temps[name]
            self.written.append(self.paths[name])

    def discard(self):
        """Removes the temporary files not yet renamed."""
        for temp in self._temps.values():
            try:
                os.remove(temp)
            except FileNotFoundError:
                pass
        self._temps.clear()


def write_texts(texts: dict) -> None:
    """Writes {path: text} through one `Outputs`: every file under its temporary name, then all
    renamed once all are written (an exception leaves every path as it was)."""
    outputs = Outputs({path: path for path in texts})
    try:
        for path, text in texts.items():
            with open(outputs.temp(path), "w") as f:
                f.write(text)
        outputs.commit()
    finally:
        outputs.discard()
