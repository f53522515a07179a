"""The scripted scenarios of synthetic AVA. Each takes (Builder, number of people) and fills it.

Every scenario builds the look-alike negatives of its context / long-term labels on purpose:
listeners and people facing a silent partner stand identically; a street watcher faces the same
spot before anyone passes, while someone passes, and long after; a rider sits in the same seat
with and without a driver; a kicker stands with the ball at the foot before each kick.
"""

from action_tx.data.synthetic_story import (
    ARM_PHONE,
    ARM_WHEEL,
    BALL,
    Builder,
    CUP,
    LIE,
    OFF_LEFT,
    OFF_RIGHT,
    PHONE,
    RUN,
    RUN_SPEED,
    SIT,
    STAND,
    VEHICLE,
    WALK,
    WALK_SPEED,
)

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
        while f < F:  # phone calls of 3-5 s with 2-4 s breaks
            n = b.s(b.rng.uniform(3, 5))
            b.hold(o, p, f, f + n, ARM_PHONE)
            f += n + b.s(b.rng.uniform(2, 4))
    else:
        b.stay(p, 0, F, x, facing, STAND)
        b.hold(b.obj(CUP), p, 0, F)


def conversation(b, n):
    """One talker, one to three pure listeners (they never talk, so their crops equal those of a
    person facing a silent partner). The talker talks twice (1.5-2.2 s), 7.8-8.4 s apart; the
    listeners hear one of the two bursts and face away during the other, turning back 0.3 s
    after it: then they face the silent talker 2-6 s after a talk they did not hear (long-term
    matched negatives), with the same clip window as after the talk they heard (long-term
    positives)."""
    rng, F = b.rng, b.F
    a, l1 = b.person(), b.person()
    pose = STAND if b.variant % 3 != 2 else SIT
    xa = rng.uniform(0.3, 0.4)
    x1 = xa + _pair_gap(b, a, l1)
    b.stay(a, 0, F, xa, 1, pose)
    arrive = 0
    if b.variant % 2:  # the listener walks in
        arrive = b.go(l1, 0, x1 + 0.15, x1, WALK)
    b.stay(l1, arrive, F, x1, -1, pose)
    listeners = [(l1, -1)]
    if pose == STAND:
        b.shake(a, l1, arrive, arrive + b.s(2.5))
    if n >= 3:
        l2 = b.person()
        b.stay(l2, 0, F, xa - rng.uniform(0.22, 0.3), 1, pose)
        listeners.append((l2, 1))
    if n >= 4:  # a third listener behind l1
        l3 = b.person()
        b.stay(l3, 0, F, x1 + rng.uniform(0.12, 0.18), -1, pose)
        listeners.append((l3, -1))
    if b.variant % 2 == 0:
        b.hold(b.obj(CUP), a, 0, F)
    f = arrive + b.s(rng.uniform(0.3, 0.8))
    for burst in range(2):
        n_talk = b.s(rng.uniform(1.5, 2.2))
        n_talk += b.snap_end(f + n_talk - 1)
        b.set(a, "talking", f, f + n_talk, True)
        if (burst + b.variant // 2) % 2 == 0:  # this burst goes unheard
            for p, d in listeners:
                b.set(p, "facing", f, f + n_talk + b.s(0.3), -d)
        f += n_talk + b.s(rng.uniform(7.8, 8.4))


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
        n_hold = b.s(rng.uniform(0.3, 0.8))
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
    """Stationary watchers face the street; the last person walks or runs in, sometimes stops,
    and leaves, while the front watcher (with at least 3 people) comments (talk to) until it
    leaves, heard by the watchers behind it. The street then stays empty 7.8-8.4 s
    (every third time 10-11 s), so a watcher that faced the pass watches the empty street and
    listens to the silent talker 2-6 s after (long-term positives of both); half of the watchers
    (alternating per pass) face away during the pass and turn back 0.3 s after it, so their
    clip windows 2-6 s after are the same without having watched or heard (matched
    negatives)."""
    rng, F = b.rng, b.F
    watchers = [b.person() for _ in range(max(1, n - 1))]
    x = rng.uniform(0.06, 0.1)
    for w in watchers:
        b.stay(w, 0, F, x, 1, STAND if rng.random() < 0.6 else SIT)
        x += rng.uniform(0.14, 0.18)
    talker = watchers[-1] if len(watchers) >= 2 else None
    m = b.person()
    i, f, last = 0, None, None
    while f is None or f < F:
        pose = RUN if (i + b.variant) % 2 else WALK  # alternate, so both gaits are common
        turn = rng.uniform(max(0.75, x), 0.88)  # short passes: more long-term than context
        stop = b.s(rng.uniform(0.5, 1)) if rng.random() < 0.2 else 0
        if f is None:  # the first pass ends 0.3-1.2 s into the video
            f = _last_on_screen(b, m, 0, turn, pose, stop, dry=True)
            f = b.s(rng.uniform(0.3, 1.2)) - f
        e = _last_on_screen(b, m, f, turn, pose, stop, dry=True)
        f += b.snap_end(e + f)
        away_from = 0 if last is None else last + b.s(7.7)
        last = f + e
        for j, w in enumerate(watchers):
            if (i + j + b.variant) % 2 == 0:
                b.set(w, "facing", away_from, last + b.s(0.3), -1)
        if talker is not None:  # talks 2.5-3.5 s, up to the mover's last frame on screen
            start = max(away_from, last - b.s(rng.uniform(2.5, 3.5)))
            b.set(talker, "talking", start, last + 1, True)
        f = _last_on_screen(b, m, f, turn, pose, stop)
        b.set(m, "present", f, F, False)
        i += 1
        speed = RUN_SPEED if pose == RUN else WALK_SPEED
        nxt = RUN_SPEED if (i + b.variant) % 2 else WALK_SPEED
        # 7.8 s: the whole long-term span (2-6 s after leaving) and the turn of the watchers
        # precede the next clip that shows the mover again (1.6 s before re-entry)
        off_screen = rng.uniform(10, 11) if i % 3 == 0 else rng.uniform(7.8, 8.4)
        # off screen from x = 1 on the way out to x = 1 on the way back in
        f += b.s(off_screen - (OFF_RIGHT - 1) / speed - (OFF_RIGHT - 1) / nxt)


def _last_on_screen(b, m, f, turn, pose, stop, dry=False):
    """A pass of m from the right edge to `turn` and back, starting at frame f -> the frame
    it is back off screen; dry=True: leaves m untouched and returns the offset (from f) of
    the last frame m is on screen."""
    sc = Builder(10**6, b.fps, np.random.default_rng(0)) if dry else b
    q = sc.person(height=1.0) if dry else m
    g0 = 0 if dry else f
    g = sc.go(q, g0, OFF_RIGHT, turn, pose)
    g = sc.stay(q, g, g + stop, turn, -1, STAND)
    g = sc.go(q, g, turn, OFF_RIGHT, pose)
    if not dry:
        return g
    pp = sc.people[q]
    on = np.flatnonzero(pp["present"][: g + 1] & (pp["x"][: g + 1] <= 1.0))
    return int(on[-1])


def vehicle(b, n):
    """A vehicle with a rider in the back seat; the driver drives (hands on the steering wheel,
    whose marker turns), stops, gets out and walks off (the rider watches, then keeps facing
    the empty street; in even variants it looks back instead), stays away 7.6-8.5 s, comes back
    and drives again."""
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
    f, angle, first = 0, 0.0, True
    while f < F:
        if not first:
            f = b.go(driver, f, OFF_RIGHT, xd, WALK)
        n_drive = b.s(max(7, F / b.fps - 13) + rng.uniform(0, 2)) if first else F
        n_idle = b.s(rng.uniform(0.5, 1.0))
        b.stay(driver, f, f + n_drive + n_idle, xd, vf, SIT)
        b.set(driver, "vehicle", f, f + n_drive + n_idle, v)
        b.set(driver, "seat", f, f + n_drive + n_idle, 0)
        b.set(driver, "driving", f, f + n_drive, True)
        b.set(driver, "arm", f, f + n_drive, ARM_WHEEL)
        k = np.arange(n_drive)
        b.oset(v, "angle", f, f + n_drive, (angle + 0.9 * k)[: max(0, min(n_drive, F - f))])
        f += n_drive + n_idle
        if b.variant % 2 == 0:
            # The rider looks back while the driver walks off and turns forward 0.3 s after
            # the driver left the frame: it faces the empty street as a watcher would, without
            # having watched (long-term matched negatives; odd variants watch).
            gone = f + int(np.ceil((1.0 - xd) / WALK_SPEED * b.fps))
            b.set(rider, "facing", f, gone + b.s(0.3), -vf)
        f = b.go(driver, f, xd, OFF_RIGHT, WALK)
        b.set(driver, "present", f, F, False)
        f += b.s(rng.uniform(7.6, 8.5) - 2 * (OFF_RIGHT - 1) / WALK_SPEED)
        first = False
    if n >= 3 and b.variant % 2 == 0:
        _extra(b, b.person(), 0.05, -1, 0)


def _kicker(b, k, xk, d):
    """Kicker k at xk facing d: ball at the foot 0.2-0.4 s, kick, ball flies out, rolls back."""
    rng, F = b.rng, b.F
    b.stay(k, 0, F, xk, d, STAND)
    ball = b.obj(BALL, y=b.people[k]["y"][0])
    foot = xk + d * 0.2 * b.people[k]["height"]
    edge = 0.5 + d * 0.7  # off screen on the kicking side
    f = b.s(rng.uniform(0, 1))
    b.oset(ball, "present", 0, f, True)
    b.oset(ball, "x", 0, f, foot)
    while f < F:
        rest = b.s(rng.uniform(0.2, 0.4))
        b.oset(ball, "present", f, f + rest, True)
        b.oset(ball, "x", f, f + rest, foot)
        f += rest
        swing = np.concatenate(
            [np.linspace(0.3, 1, b.s(0.3), endpoint=False), np.linspace(1, 0, b.s(0.2))]
        )
        s0 = f - b.s(0.3)
        b.set(k, "kick", s0, s0 + len(swing), swing[: max(0, min(len(swing), F - s0))])
        if f < F:
            b.kicks.append((k, f))
        for speed, start, stop in ((1.3, foot, edge), (1.0, edge, foot)):
            n = int(np.ceil(abs(stop - start) / speed * b.fps))
            path = start + (stop - start) * np.arange(n) / n
            b.oset(ball, "present", f, f + n, True)
            b.oset(ball, "x", f, f + n, path[: max(0, min(n, F - f))])
            f += n + (b.s(rng.uniform(0.2, 0.5)) if speed > 1 else 0)


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
    fa = b.go(a, f0, -0.05, xa, WALK)
    fc = b.go(c, f0 + b.s(rng.uniform(0, 1)), 1.05, xc, WALK)
    b.hold(cup, a, f0, fa)
    f = max(fa, fc)
    b.hold(cup, a, fa, f)
    f_end = F - b.s(rng.uniform(8, 9))  # c runs off; a then watches the empty spot
    b.stay(a, fa, F, xa, 1)  # a stays and keeps facing where c ran off
    b.stay(c, fc, f_end, xc, -1)
    b.shake(a, c, f, f + b.s(2))
    f += b.s(2.5)
    holder = a
    while f < f_end - b.s(3):
        b.hold(cup, holder, f, f + b.s(1))
        f = b.give(cup, holder, c if holder == a else a, f + b.s(1))
        holder = c if holder == a else a
        if rng.random() < 0.5 and f < f_end - b.s(3):
            b.talk_bursts(holder, f, f + b.s(rng.uniform(1.5, 3)), pause=(0.3, 1.0))
            f += b.s(2)
    b.hold(cup, holder, f, F)
    b.go(c, f_end, xc, OFF_RIGHT, RUN)
    if n >= 3:
        _extra(
            b, b.person(), 0.05 if mid > 0.5 else 0.95, -1 if mid > 0.5 else 1, (b.variant + 1) % 3
        )


def jog(b, n):
    """A jogger runs back and forth across the whole frame, a walker strolls across the other
    way; a third person jogs too, a fourth walks."""
    rng, F = b.rng, b.F
    cast = ((RUN, 1), (WALK, -1), (RUN, -1), (WALK, 1))[:n]
    for p, pose, d in ((b.person(), pose, d) for pose, d in cast):
        f = -b.s(rng.uniform(0, 4))
        while f < F:
            x0, x1 = (OFF_LEFT, OFF_RIGHT) if d > 0 else (OFF_RIGHT, OFF_LEFT)
            f = b.go(p, f, x0, x1, pose) + b.s(rng.uniform(0, 0.5))
            d = -d


# name -> (function, min people, max people)
SCENARIOS = {
    "conversation": (conversation, 2, 4),
    "street": (street, 2, 4),
    "kick": (kick, 1, 3),
    "vehicle": (vehicle, 2, 3),
    "silent": (silent, 2, 3),
    "meet": (meet, 2, 3),
    "jog": (jog, 2, 4),
}
# The order videos cycle through, chosen (with the per-video `variant`) so that one cycle meets
# the spec's quotas: streets and conversations carry the long-term labels (four streets: half
# their watchers per pass are matched negatives), jogs and kicks the temporal ones, vehicles
# drive/ride and lie/sleep, silent pairs give/serve.
CYCLE = (
    "street",
    "conversation",
    "jog",
    "vehicle",
    "silent",
    "street",
    "kick",
    "conversation",
    "street",
    "street",
    "vehicle",
    "silent",
)


def build_video(scenario, num_frames, fps, max_people, rng, variant=0):
    """Runs one scenario -> SceneState; the scene is mirrored left-right half of the time.
    variant: the number of earlier videos of the same split with this scenario (see Builder)."""
    fn, lo, hi = SCENARIOS[scenario]
    if max_people < lo:
        raise ValueError(f"scenario {scenario!r} needs at least {lo} people, --people={max_people}")
    b = Builder(num_frames, fps, rng, variant)
    # Casts are as large as allowed (they carry the rarer labels), except that silent pairs
    # and meetings alternate with and without a bystander.
    hi = min(hi, max_people)
    n = hi if scenario not in ("silent", "meet") else lo + variant % (hi - lo + 1)
    fn(b, n)
    return b.build(scenario, mirror=bool(rng.random() < 0.5))
