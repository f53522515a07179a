"""A lock on a model_dir: one trainer writes its checkpoints at a time.

    with model_dir_lock.acquire(model_dir, log=print):
        train(...)

The lock is the file `MODEL_DIR/train.lock`, a JSON object naming its holder: pid, host,
the process's start time (Linux: to tell a reused pid from the holder), the start date and
the command. It is created atomically (a complete file is hard-linked into place, so a reader
never sees half of one) and removed on release. A lock whose holder is a process of this host
that no longer runs (killed, crashed) is stale: it is taken over, said through `log`. A lock of
another host cannot be checked from here and is always respected; the error says which file
to delete if that process is gone. Local paths only: a `gs://` model_dir is not locked.
"""

import datetime
import json
import os
import socket
import sys
import uuid
from typing import Callable, Optional

LOCK_FILE = "train.lock"


class ModelDirLocked(RuntimeError):
    """Another live process holds the model_dir's lock."""


def _start_ticks(pid: int) -> Optional[int]:
    """The process's start time in clock ticks after boot (Linux /proc), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # Field 22; the command name (field 2) may hold spaces, so count after its ')'.
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _running(pid: int, ticks: Optional[int]) -> bool:
    """Whether the local process `pid` (started at `ticks`, when known) still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":  # a zombie: it has exited
                return False
    except (OSError, IndexError):
        pass
    now = _start_ticks(pid)
    return ticks is None or now is None or now == ticks  # else the pid was reused


def _describe(holder: dict, path: str) -> str:
    return (
        f"process {holder.get('pid')} on {holder.get('host')} (started "
        f"{holder.get('started', '?')}; lock file {path})"
    )


class ModelDirLock:
    """The held lock of one model_dir (see the module docstring); `release()` or a `with`
    block gives it back."""

    def __init__(self, model_dir: str, log: Callable[[str], None] = print):
        self.model_dir, self.log = model_dir, log
        self.path = os.path.join(model_dir, LOCK_FILE)
        self.record = None

    def _read(self) -> Optional[dict]:
        try:
            with open(self.path) as f:
                holder = json.load(f)
            return holder if isinstance(holder, dict) else {}
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # not ours to judge: treated as held by an unknown process

    def acquire(self) -> "ModelDirLock":
        """Takes the lock; raises ModelDirLocked naming the live holder."""
        if "://" in self.model_dir:
            return self
        os.makedirs(self.model_dir, exist_ok=True)
        pid = os.getpid()
        record = {
            "pid": pid,
            "host": socket.gethostname(),
            "start_ticks": _start_ticks(pid),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
            "token": uuid.uuid4().hex,
        }
        scratch = f"{self.path}.{pid}.{record['token'][:8]}.tmp"
        with open(scratch, "w") as f:
            json.dump(record, f, indent=1)
        try:
            for _ in range(3):
                try:
                    os.link(scratch, self.path)  # fails if the lock exists: atomic
                    self.record = record
                    return self
                except FileExistsError:
                    pass
                holder = self._read()
                if holder is None:
                    continue  # released in between: try again
                if (
                    holder.get("host") == record["host"]
                    and isinstance(holder.get("pid"), int)
                    and not _running(holder["pid"], holder.get("start_ticks"))
                ):
                    self.log(
                        f"taking over the stale lock {self.path} of process "
                        f"{holder['pid']} on {holder['host']}, which is not running"
                    )
                    try:
                        os.remove(self.path)
                    except FileNotFoundError:
                        pass
                    continue
                here = holder.get("host") == record["host"]
                raise ModelDirLocked(
                    f"{self.model_dir} is in use by another trainer: "
                    f"{_describe(holder, self.path)}; wait for it to end or use another "
                    "--model_dir"
                    + ("" if here else f" (if that process is gone, delete {self.path})")
                )
            raise ModelDirLocked(
                f"{self.model_dir}: cannot take the lock {self.path} (it keeps changing hands)"
            )
        finally:
            os.remove(scratch)

    def release(self) -> None:
        """Removes the lock file if it is still this process's."""
        if self.record is None:
            return
        holder = self._read()
        if holder and holder.get("token") == self.record["token"]:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
        self.record = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False


def acquire(model_dir: str, log: Callable[[str], None] = print) -> ModelDirLock:
    """Takes the lock of `model_dir` (see ModelDirLock.acquire) and returns it."""
    return ModelDirLock(model_dir, log).acquire()
