"""The scripted scenarios of synthetic AVA. Each takes (Builder, number of people) and fills it.

Every scenario builds the look-alike negatives of its context / long-term labels on purpose:
listeners and people facing a silent partner stand identically; a street watcher faces the same
spot before anyone passes, while someone passes, and long after; a rider sits in the same seat
with and without a driver; a kicker stands with the ball at the foot before each kick.
"""
from action_tx.data.synthetic_story import (
    ARM_HOLD, ARM_PHONE, ARM_WHEEL, BALL, Builder, CUP, LIE, OFF_LEFT, OFF_RIGHT, PHONE, RUN,
    SIT, STAND, VEHICLE, WALK)

import numpy as np


def _pair_gap(b, a, c):
    """Distance at which two facing people's reaching hands meet (see the renderer's ARM_REACH)."""
    return 0.3 * (b.people[a]["height"] + b.people[c]["height"])


def _extra(b, p, x, facing, kind):
    """A bystander facing out of the scene: lies, sits with a phone, or stands holding a cup."""
    F = b.F
    if kind == 0:
        b.stay(p, 0, F, x, facing, LIE)
    elif kind == 1:
        b.stay(p, 0, F, x, facing, SIT)
        o = b.obj(PHONE)
        f = b.s(b.rng.uniform(0, 3))
        while f < F:                      # phone calls of 3-5 s with 2-4 s breaks
            n = b.s(b.rng.uniform(3, 5))
            b.hold(o, p, f, f + n, ARM_PHONE)
            f += n + b.s(b.rng.uniform(2, 4))
    else:
        b.stay(p, 0, F, x, facing, STAND)
        b.hold(b.obj(CUP), p, 0, F)


def conversation(b, n):
    """One talker, one or two pure listeners (they never talk, so their crops equal those of a
    person facing a silent partner); talk stops for good some seconds before the end."""
    rng, F = b.rng, b.F
    a, l1 = b.person(), b.person()
    pose = STAND if rng.random() < 0.6 else SIT
    xa = rng.uniform(0.3, 0.42)
    x1 = xa + _pair_gap(b, a, l1)
    b.stay(a, 0, F, xa, 1, pose)
    arrive = b.go(l1, 0, OFF_RIGHT - 0.1, x1, WALK)      # the listener walks in
    if pose == STAND:
        b.shake(a, l1, arrive, arrive + b.s(3))
        arrive += b.s(3)
    b.stay(l1, arrive, F, x1, -1, pose)
    if n >= 3:
        l2 = b.person()
        b.stay(l2, 0, F, xa - rng.uniform(0.22, 0.3), 1, pose)
    if rng.random() < 0.5:
        b.hold(b.obj(CUP), a, 0, F)
    end = F - b.s(rng.uniform(0, 0.35) * F / b.fps)
    b.talk_bursts(a, arrive + b.s(rng.uniform(0, 1)), end)
    if n >= 4:
        _extra(b, b.person(), 0.06, -1, int(rng.integers(3)))


def silent(b, n):
    """Two people facing each other without a word: hand shake, a cup passed back and forth,
    a phone call; a third one faces them, silent too."""
    rng, F = b.rng, b.F
    a, c = b.person(), b.person()
    xa = rng.uniform(0.25, 0.4)
    b.stay(a, 0, F, xa, 1, STAND)
    f = b.go(c, 0, OFF_RIGHT - 0.1, xa + _pair_gap(b, a, c), WALK)
    b.stay(c, f, F, xa + _pair_gap(b, a, c), -1, STAND)
    b.shake(a, c, f, f + b.s(2))
    f += b.s(2.5)
    cup, holder = b.obj(CUP), a
    while f < F - b.s(3):
        n_hold = b.s(rng.uniform(0.5, 1.5))
        b.hold(cup, holder, f, f + n_hold)
        f = b.give(cup, holder, c if holder == a else a, f + n_hold)
        holder = c if holder == a else a
    b.hold(cup, holder, f, F)
    if n >= 3:
        e = b.person()
        b.stay(e, 0, F, xa - rng.uniform(0.22, 0.28), 1, STAND)
        o, f = b.obj(PHONE), b.s(rng.uniform(0, 3))
        while f < F:
            k = b.s(rng.uniform(2, 4))
            b.hold(o, e, f, f + k, ARM_PHONE)
            f += k + b.s(rng.uniform(3, 6))
    if n >= 4:
        _extra(b, b.person(), 0.94, 1, 0)


def street(b, n):
    """A stationary watcher faces the street; others walk or run in, sometimes stop, and leave.
    Passes are separated by gaps of 1-9 s, so the watcher also faces the empty street long
    after someone left (negative) and shortly after (long-term positive)."""
    rng, F = b.rng, b.F
    watchers = [b.person() for _ in range(1 if n <= 3 else 2)]
    x = rng.uniform(0.06, 0.12)
    for w in watchers:
        b.stay(w, 0, F, x, 1, STAND if rng.random() < 0.6 else SIT)
        x += rng.uniform(0.14, 0.2)
    movers = [b.person() for _ in range(max(1, n - len(watchers)))]
    f, i = b.s(rng.uniform(0, 3)), 0
    while f < F:
        m = movers[i % len(movers)]
        i += 1
        pose = RUN if i % 2 else WALK          # alternate, so both gaits are common
        turn = rng.uniform(0.6, 0.85)
        f = b.go(m, f, OFF_RIGHT, turn, pose)
        if rng.random() < 0.3:
            f = b.stay(m, f, f + b.s(rng.uniform(1, 3)), turn, -1, STAND)
        f = b.go(m, f, turn, OFF_RIGHT, pose)
        b.set(m, "present", f, F, False)
        f += b.s(rng.choice([0.5, 6.0, 8.0]) + rng.uniform(0, 1))


def vehicle(b, n):
    """A parked vehicle with a rider in the back seat; the driver comes, drives (hands on the
    steering wheel, whose marker turns), stops, leaves, and comes back."""
    rng, F = b.rng, b.F
    vf = 1
    vx, gy = rng.uniform(0.42, 0.52), rng.uniform(0.9, 0.95)
    v = b.obj(VEHICLE, x=vx, y=gy, facing=vf)
    b.oset(v, "present", 0, F, True)
    seat_y = gy - 0.1
    rider, driver = b.person(y=seat_y), b.person(y=seat_y)
    xr, xd = vx - 0.14 * vf, vx + 0.12 * vf
    b.stay(rider, 0, F, xr, vf, SIT)
    b.set(rider, "vehicle", 0, F, v)
    b.set(rider, "seat", 0, F, 1)
    f = b.s(rng.uniform(0, 4))
    angle = 0.0
    while f < F:
        f = b.go(driver, f, OFF_RIGHT, xd, WALK)
        n_drive, n_idle = b.s(rng.uniform(4, 9)), b.s(rng.uniform(0.5, 2))
        b.stay(driver, f, f + n_drive + n_idle, xd, vf, SIT)
        b.set(driver, "vehicle", f, f + n_drive + n_idle, v)
        b.set(driver, "seat", f, f + n_drive + n_idle, 0)
        b.set(driver, "driving", f, f + n_drive, True)
        b.set(driver, "arm", f, f + n_drive, ARM_WHEEL)
        k = np.arange(n_drive)
        b.oset(v, "angle", f, f + n_drive, (angle + 0.9 * k)[:max(0, min(n_drive, F - f))])
        f += n_drive + n_idle
        f = b.go(driver, f, xd, OFF_RIGHT, WALK)
        b.set(driver, "present", f, F, False)
        f += b.s(rng.uniform(2, 6))
    if n >= 3 and rng.random() < 0.5:
        _extra(b, b.person(), 0.05, -1, 0)


def _kicker(b, k, xk, d):
    """Kicker k at xk facing d: ball at the foot 1-2 s, kick, ball flies out, rolls back."""
    rng, F = b.rng, b.F
    b.stay(k, 0, F, xk, d, STAND)
    ball = b.obj(BALL, y=b.people[k]["y"][0])
    foot = xk + d * 0.2 * b.people[k]["height"]
    edge = 0.5 + d * 0.7                  # off screen on the kicking side
    f = b.s(rng.uniform(0, 1))
    b.oset(ball, "present", 0, f, True)
    b.oset(ball, "x", 0, f, foot)
    while f < F:
        rest = b.s(rng.uniform(0.8, 1.5))
        b.oset(ball, "present", f, f + rest, True)
        b.oset(ball, "x", f, f + rest, foot)
        f += rest
        swing = np.concatenate([np.linspace(0.3, 1, b.s(0.3), endpoint=False),
                                np.linspace(1, 0, b.s(0.2))])
        s0 = f - b.s(0.3)
        b.set(k, "kick", s0, s0 + len(swing), swing[:max(0, min(len(swing), F - s0))])
        if f < F:
            b.kicks.append((k, f))
        for speed, start, stop in ((1.3, foot, edge), (1.0, edge, foot)):
            n = int(np.ceil(abs(stop - start) / speed * b.fps))
            path = start + (stop - start) * np.arange(n) / n
            b.oset(ball, "present", f, f + n, True)
            b.oset(ball, "x", f, f + n, path[:max(0, min(n, F - f))])
            f += n + (b.s(rng.uniform(0.3, 1.0)) if speed > 1 else 0)


def kick(b, n):
    """One or two kickers (back to back, kicking outwards) with balls that come back; with
    three people a bystander lies between them."""
    rng = b.rng
    _kicker(b, b.person(), rng.uniform(0.18, 0.3), 1)
    if n >= 2:
        _kicker(b, b.person(), rng.uniform(0.7, 0.82), -1)
    if n >= 3:
        _extra(b, b.person(), 0.5, 1, 1)


def meet(b, n):
    """Two people walk in from both sides, shake hands, pass a cup, one talks briefly; then
    one runs off and the other keeps looking after them."""
    rng, F = b.rng, b.F
    a, c = b.person(), b.person()
    mid = rng.uniform(0.4, 0.6)
    gap = _pair_gap(b, a, c)
    xa, xc = mid - gap / 2, mid + gap / 2
    cup = b.obj(CUP)
    f0 = b.s(rng.uniform(0, 1))
    fa = b.go(a, f0, OFF_LEFT, xa, WALK)
    fc = b.go(c, f0 + b.s(rng.uniform(0, 1)), OFF_RIGHT, xc, WALK)
    b.hold(cup, a, f0, fa)
    f = max(fa, fc)
    b.hold(cup, a, fa, f)
    f_end = F - b.s(rng.uniform(4, 6))
    b.stay(a, fa, F, xa, 1)             # a stays and keeps facing where c ran off
    b.stay(c, fc, f_end, xc, -1)
    b.shake(a, c, f, f + b.s(3))
    f += b.s(3.5)
    holder = a
    while f < f_end - b.s(3):
        b.hold(cup, holder, f, f + b.s(1))
        f = b.give(cup, holder, c if holder == a else a, f + b.s(1))
        holder = c if holder == a else a
        if rng.random() < 0.5 and f < f_end - b.s(3):
            b.talk_bursts(holder, f, f + b.s(rng.uniform(1.5, 3)), long_pauses=False)
            f += b.s(2)
    b.hold(cup, holder, f, F)
    b.go(c, f_end, xc, OFF_RIGHT, RUN)
    if n >= 3:
        _extra(b, b.person(), 0.05 if mid > 0.5 else 0.95, -1 if mid > 0.5 else 1,
               int(rng.integers(3)))


# name -> (function, min people, max people)
SCENARIOS = {
    "conversation": (conversation, 2, 3),
    "street": (street, 2, 4),
    "kick": (kick, 1, 3),
    "vehicle": (vehicle, 2, 3),
    "silent": (silent, 2, 3),
    "meet": (meet, 2, 3),
}
# The order videos cycle through: conversation, street and vehicle more than once, as they
# carry the context and long-term labels.
CYCLE = ("conversation", "street", "vehicle", "kick", "street", "conversation", "street",
         "silent", "meet", "conversation", "street", "vehicle")


def build_video(scenario, num_frames, fps, max_people, rng):
    """Runs one scenario -> SceneState; the scene is mirrored left-right half of the time."""
    fn, lo, hi = SCENARIOS[scenario]
    if max_people < lo:
        raise ValueError(f"scenario {scenario!r} needs at least {lo} people, --people={max_people}")
    b = Builder(num_frames, fps, rng)
    # Conversations, streets and kicks use as many people as allowed (they carry the rarer
    # labels); the others vary their cast.
    hi = min(hi, max_people)
    n = hi if scenario in ("conversation", "street", "kick") else int(rng.integers(lo, hi + 1))
    fn(b, n)
    return b.build(scenario, mirror=bool(rng.random() < 0.5))
