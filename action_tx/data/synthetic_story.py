"""Per-video event scripts of synthetic AVA: the scene state of every frame.

A video is one of a few scripted scenarios (conversation, silent pair, street watcher, vehicle,
kicker, meeting), each filling `SceneState`: per-person and per-object arrays over frames. The
labels are *derived from this state* by the rules of `synthetic_labels.py`, and tests check those
rules against the same state, so nothing about a label is decided twice.

Coordinates are "world" normalized: x in frame widths (0 = left edge, 1 = right edge; people may
stand outside [0, 1] when off screen), y the ground line of a person's feet in frame heights.
Frame f (0-based) shows time f / fps; on disk it is file number f + 1.
"""

import dataclasses

import numpy as np

STAND, SIT, WALK, RUN, LIE = range(5)
ARM_DOWN, ARM_HOLD, ARM_PHONE, ARM_REACH, ARM_WHEEL = range(5)
PHONE, CUP, BALL, VEHICLE = 1, 2, 3, 4  # object_class of object_detections_*.csv
OBJECT_NAMES = {PHONE: "phone", CUP: "cup", BALL: "ball", VEHICLE: "vehicle"}

WALK_SPEED, RUN_SPEED = 0.1, 0.22  # frame widths per second
WALK_HZ, RUN_HZ = 1.5, 1.5  # gait cycles/s: equal, so a frame's stride
# says nothing; only displacement over frames does
OFF_LEFT, OFF_RIGHT = -0.2, 1.2  # where people enter / leave


@dataclasses.dataclass
class SceneState:
    """Everything drawn and labelled in one video. P people, O objects, F frames.

    Person arrays are [P, F]: present (in the scene, possibly off screen), x, y (feet),
    facing (+1 right, -1 left), pose (STAND..LIE), phase (gait phase, radians), talking (in a
    talk burst; the mouth flashes), arm (ARM_*), kick (0..1 leg swing), vehicle (object index
    or -1), seat (0 driver, 1 rider, -1), driving, handshake (partner index or -1).
    height [P] in frame heights; colour [P] palette index.
    Object arrays are [O, F]: obj_present, obj_x, obj_y (ground point or centre of free
    objects), obj_holder (person index or -1), obj_to (receiver during a hand-over, else -1),
    obj_alpha (hand-over progress 0..1), obj_angle (steering-wheel angle, radians);
    obj_kind [O] (PHONE..VEHICLE), obj_facing [O] (vehicles).
    kicks: list of (person, frame of contact); gives: list of (giver, receiver, f0, f1).
    """

    fps: int
    num_frames: int
    height: np.ndarray
    colour: np.ndarray
    present: np.ndarray
    x: np.ndarray
    y: np.ndarray
    facing: np.ndarray
    pose: np.ndarray
    phase: np.ndarray
    talking: np.ndarray
    arm: np.ndarray
    kick: np.ndarray
    vehicle: np.ndarray
    seat: np.ndarray
    driving: np.ndarray
    handshake: np.ndarray
    obj_kind: np.ndarray
    obj_facing: np.ndarray
    obj_present: np.ndarray
    obj_x: np.ndarray
    obj_y: np.ndarray
    obj_holder: np.ndarray
    obj_to: np.ndarray
    obj_alpha: np.ndarray
    obj_angle: np.ndarray
    kicks: list
    gives: list
    scenario: str = ""
    camera: np.ndarray = None  # [F, 2] int pixel offsets (dx, dy) of the slow camera jitter

    @property
    def num_people(self):
        return self.x.shape[0]

    def speed(self):
        """[P, F] horizontal speed in frame widths per second (central difference)."""
        dx = np.gradient(self.x, axis=1) if self.num_frames > 1 else np.zeros_like(self.x)
        return np.abs(dx) * self.fps


class Builder:
    """Fills a SceneState frame range by frame range. Frame ranges are [f0, f1), clipped."""

    def __init__(self, num_frames, fps, rng, variant=0):
        # variant: how many earlier videos of the split played the same scenario; scenarios
        # cycle their rare-label choices (bystander kind, cast) by it, so quotas do not rest
        # on luck.
        self.F, self.fps, self.rng, self.variant = num_frames, fps, rng, variant
        self.people, self.objects = [], []
        self.kicks, self.gives = [], []

    def s(self, seconds):
        return int(round(seconds * self.fps))

    def person(self, height=None, y=None):
        rng = self.rng
        F = self.F
        self.people.append(
            dict(
                height=float(height if height is not None else rng.uniform(0.42, 0.56)),
                present=np.zeros(F, bool),
                x=np.full(F, OFF_LEFT, np.float32),
                y=np.full(F, float(y if y is not None else rng.uniform(0.87, 0.95)), np.float32),
                facing=np.ones(F, np.int8),
                pose=np.zeros(F, np.int8),
                phase=np.zeros(F, np.float32),
                talking=np.zeros(F, bool),
                arm=np.zeros(F, np.int8),
                kick=np.zeros(F, np.float32),
                vehicle=np.full(F, -1, np.int8),
                seat=np.full(F, -1, np.int8),
                driving=np.zeros(F, bool),
                handshake=np.full(F, -1, np.int8),
            )
        )
        return len(self.people) - 1

    def obj(self, kind, x=0.0, y=0.9, facing=1):
        F = self.F
        self.objects.append(
            dict(
                kind=kind,
                facing=facing,
                present=np.zeros(F, bool),
                x=np.full(F, x, np.float32),
                y=np.full(F, y, np.float32),
                holder=np.full(F, -1, np.int8),
                to=np.full(F, -1, np.int8),
                alpha=np.zeros(F, np.float32),
                angle=np.zeros(F, np.float32),
            )
        )
        return len(self.objects) - 1

    def _rng(self, f0, f1):
        return slice(max(0, min(self.F, f0)), max(0, min(self.F, f1)))

    @staticmethod
    def _fit(value, f0, part):
        """A per-frame array `value` for frames f0, f0 + 1, ... that starts before frame 0 cut
        to the frames `part` keeps (its head dropped: a kick swing that began before the
        video, bench seed 110 once crashed here); anything else as given."""
        size = part.stop - part.start
        if f0 >= 0 or np.ndim(value) == 0 or len(value) == size:
            return value
        return value[part.start - f0 :][:size]

    def set(self, p, key, f0, f1, value):
        part = self._rng(f0, f1)
        self.people[p][key][part] = self._fit(value, f0, part)

    def oset(self, o, key, f0, f1, value):
        part = self._rng(f0, f1)
        self.objects[o][key][part] = self._fit(value, f0, part)

    def stay(self, p, f0, f1, x, facing, pose=STAND):
        """Stationary in [f0, f1)."""
        for key, v in (("present", True), ("x", x), ("facing", facing), ("pose", pose)):
            self.set(p, key, f0, f1, v)
        return f1

    def go(self, p, f0, x0, x1, pose=WALK):
        """Walks or runs from x0 to x1 starting at f0; returns the arrival frame."""
        speed = WALK_SPEED if pose == WALK else RUN_SPEED
        n = max(1, int(np.ceil(abs(x1 - x0) / speed * self.fps)))
        t = np.arange(n + 1, dtype=np.float32) / n
        f = np.arange(f0, f0 + n + 1)
        keep = (f >= 0) & (f < self.F)
        pp = self.people[p]
        pp["present"][f[keep]] = True
        pp["x"][f[keep]] = (x0 + (x1 - x0) * t)[keep]
        pp["facing"][f[keep]] = 1 if x1 >= x0 else -1
        pp["pose"][f[keep]] = pose
        hz = WALK_HZ if pose == WALK else RUN_HZ
        start = self.rng.uniform(0, 2 * np.pi)
        pp["phase"][f[keep]] = (start + 2 * np.pi * hz * (f - f0) / self.fps)[keep]
        return f0 + n

    def snap_end(self, last):
        """Frames to add so that `last` (an event's last frame) lies 0.4-1 s after a whole
        second: then no whole-second keyframe falls 1.6-2 s after it (neither in the +-1.6 s
        clip nor long-term: such keyframes would be excluded)."""
        r = last % self.fps
        return max(0, int(round(0.4 * self.fps)) - r)

    def talk_bursts(self, p, f0, f1, pause=(7.0, 7.8)):
        """Talk bursts of 1.5-3 s separated by pauses drawn from `pause` (seconds) until f1; the
        default pauses (> 6 s + the ambiguous band) make every pause a full long-term span."""
        rng, f = self.rng, f0
        while f < f1:
            n = self.s(rng.uniform(1.5, 3.0))
            n += self.snap_end(f + n - 1)
            self.set(p, "talking", f, min(f + n, f1), True)
            f += n + self.s(rng.uniform(*pause))

    def hold(self, o, p, f0, f1, arm=ARM_HOLD):
        self.oset(o, "present", f0, f1, True)
        self.oset(o, "holder", f0, f1, p)
        self.set(p, "arm", f0, f1, arm)

    def give(self, o, giver, receiver, f0, seconds=3.0):
        """Hand-over in [f0, f0 + seconds): both arms reach, the object travels hand to hand."""
        n = self.s(seconds)
        self.hold(o, giver, f0, f0 + n, ARM_REACH)
        self.set(receiver, "arm", f0, f0 + n, ARM_REACH)
        self.oset(o, "to", f0, f0 + n, receiver)
        idx = np.arange(n)
        sl = self._rng(f0, f0 + n)
        self.objects[o]["alpha"][sl] = (idx / max(1, n - 1))[sl.start - f0 : sl.stop - f0]
        self.gives.append((giver, receiver, f0, f0 + n))
        return f0 + n

    def shake(self, a, b, f0, f1):
        for p, q in ((a, b), (b, a)):
            self.set(p, "arm", f0, f1, ARM_REACH)
            self.set(p, "handshake", f0, f1, q)

    def build(self, scenario, mirror=False):
        """Stacks the arrays; mirror=True flips the scene left-right (x -> 1 - x)."""
        P = self.people
        st = {k: np.stack([p[k] for p in P]) for k in P[0] if k != "height"}
        O = self.objects
        ob = {
            k: (np.stack([o[k] for o in O]) if O else np.zeros((0, self.F), np.float32))
            for k in ("present", "x", "y", "holder", "to", "alpha", "angle")
        }
        ob["present"] = ob["present"].astype(bool)
        for k in ("holder", "to"):
            ob[k] = ob[k].astype(np.int8) if O else np.zeros((0, self.F), np.int8)
        kinds = np.array([o["kind"] for o in O], np.int8)
        ofacing = np.array([o["facing"] for o in O], np.int8)
        if mirror:
            st["x"], st["facing"] = (1.0 - st["x"]).astype(np.float32), -st["facing"]
            ob["x"], ofacing = (1.0 - ob["x"]).astype(np.float32), -ofacing
        return SceneState(
            fps=self.fps,
            num_frames=self.F,
            height=np.array([p["height"] for p in P], np.float32),
            colour=self.rng.permutation(8)[: len(P)].astype(np.int8),
            obj_kind=kinds,
            obj_facing=ofacing,
            **st,
            **{"obj_" + k: v for k, v in ob.items()},
            kicks=sorted(self.kicks),
            gives=sorted(self.gives),
            scenario=scenario,
        )
