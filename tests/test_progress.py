"""action_tx.progress.Progress: a carriage-return line on a terminal, plain lines every few
seconds and at the end elsewhere; one class for every loop, free of TensorFlow."""

import io
import subprocess
import sys

from action_tx.progress import Progress


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def test_terminal_redraws_one_line_and_ends_it_on_close():
    clock, out = FakeClock(), Stream(tty=True)
    bar = Progress(4, "eval", unit="keyframes", stream=out, clock=clock, width=4)
    assert bar.terminal
    for _ in range(4):
        clock.now += 1.0
        bar.update(1)
    bar.close()
    bar.close()  # a second close writes nothing
    text = out.getvalue()
    assert text.count("\r") == 4 and text.count("\n") == 1 and text.endswith("\n")
    draws = text.rstrip("\n").split("\r")[1:]
    assert draws[0] == "eval [#...] 1/4 keyframes  1.00/s  eta 0:00:03"
    assert draws[-1] == "eval [####] 4/4 keyframes  1.00/s  took 0:00:04"


def test_terminal_blanks_a_longer_line_and_newline_makes_room_for_other_output():
    clock, out = FakeClock(), Stream(tty=True)
    bar = Progress(None, "x", stream=out, clock=clock)
    clock.now += 1.0
    bar.set(5, note="a long note")
    bar.set(6, note="")
    first, second = out.getvalue().split("\r")[1:]
    assert len(second) == len(first) and second.rstrip() == "x 6  6.00/s"
    bar.newline()
    out.write("checkpoint saved\n")
    bar.set(7)
    assert out.getvalue().endswith("checkpoint saved\n\rx 7  7.00/s")


def test_not_a_terminal_prints_a_line_every_interval_and_the_last_one():
    clock, out = FakeClock(), Stream(tty=False)
    bar = Progress(
        1000, "train", unit="steps", stream=out, clock=clock, interval=5.0, start=600, width=10
    )
    assert not bar.terminal
    for _ in range(400):  # 400 steps, 0.25 s each: 100 s
        clock.now += 0.25
        bar.update(1, note="loss 0.5000")
    bar.close()
    text = out.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and text.endswith("\n")
    # One line per 5 s (the last one, at the end, once), never one per update.
    assert len(lines) == 20
    assert lines[0] == "train [######....] 620/1000 steps  4.00/s  eta 0:01:35  loss 0.5000"
    assert lines[-1] == ("train [##########] 1000/1000 steps  4.00/s  took 0:01:40  loss 0.5000")


def test_not_a_terminal_close_prints_the_final_state_once():
    clock, out = FakeClock(), Stream(tty=False)
    bar = Progress(None, "bank", stream=out, clock=clock)
    clock.now += 2.0
    bar.update(3)  # under the interval: nothing yet
    assert out.getvalue() == ""
    bar.close()
    bar.close()
    assert out.getvalue() == "bank 3  1.50/s\n"
    quiet = Stream(tty=False)
    off = Progress(3, "off", enabled=False, stream=quiet, clock=clock)
    off.update(3)
    off.close()
    assert quiet.getvalue() == "" and off.done == 3


def test_default_stream_is_stderr_and_importing_loads_no_tensorflow():
    code = (
        "import sys, action_tx.progress as p; bar = p.Progress(2, 'x'); "
        "bar.update(2); bar.close(); print('tensorflow' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"
    assert proc.stderr.startswith("x [") and "2/2" in proc.stderr  # a pipe: plain lines
    assert "\r" not in proc.stderr
