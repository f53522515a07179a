"""Label rules of synthetic AVA: (SceneState, keyframe, person) -> [(AVA action id, evidence)].

Evidence (what a model must see to get the label right):
  self      visible on the person alone inside the clip;
  context   only other people / objects decide it (the person's own crop equals a negative's);
  temporal  needs motion inside the clip;
  long_term the deciding event ended more than LONG_TERM_S (2 s) before the keyframe, up to
            MEMORY_S seconds before it, and nothing deciding is in the clip window
            [k - CLIP_HALF_S, k + CLIP_HALF_S] (1.6 s: the longest clip the trainer uses).
  ambiguous (not a label) the only deciding event ended 1.6-2 s before the keyframe: neither in
            the clip nor long-term. Like AVA's unsure keyframes, such a keyframe is excluded.

Matched negatives (`matched_negatives`): person-keyframes negative for a context / long_term
class that look like its positives. context_negative: the person's own state at the keyframe is
a positive's (still, facing a person who talks / a spot where someone moved in its view / in a
rear vehicle seat); long_term_negative: its whole +-CLIP_HALF_S window is (still and silent all
window, the deciding person as visible as for a positive), only the history 2-6 s back differs.
The context candidates are then drawn to the positives' own crops (`select_matched`): per class
and `crop_signature`, at most MATCH_RATIO times as many negatives as positives, none where no
positive looks like that (a look-alike must look like some positive, and as often).

"p faces q": both present, p not lying, q on screen (0 <= x <= 1) on the side p's head points to,
at horizontal distance MIN_GAP..FACE_RANGE. "q moves": q walks or runs.
"""

import numpy as np

from action_tx.data.synthetic_story import LIE, RUN, SIT, STAND, WALK, ARM_HOLD, ARM_PHONE

# (AVA id, exact AVA name, evidence). The ids are the real AVA v2.x ids.
CLASSES = (
    (8, "lie/sleep", "self"),
    (10, "run/jog", "temporal"),
    (11, "sit", "self"),
    (12, "stand", "self"),
    (14, "walk", "temporal"),
    (15, "answer phone", "self"),
    (17, "carry/hold (an object)", "self"),
    (28, "drive (e.g., a car, a truck)", "self"),
    (35, "kick (an object)", "temporal"),
    (49, "ride (e.g., a bike, a car, a horse)", "context"),
    (65, "give/serve (an object) to (a person)", "temporal"),
    (68, "hand shake", "self"),
    (74, "listen to (a person)", "context|long_term"),
    (79, "talk to (e.g., self, a person, a group)", "self"),
    (80, "watch (a person)", "context|long_term"),
)
NAMES = {i: n for i, n, _ in CLASSES}
EVIDENCE = ("self", "context", "temporal", "long_term")
POSE_IDS = {STAND: 12, SIT: 11, WALK: 14, RUN: 10, LIE: 8}
LIE_SLEEP, RUN_JOG, SIT_ID, STAND_ID, WALK_ID = 8, 10, 11, 12, 14
ANSWER_PHONE, CARRY, DRIVE, KICK, RIDE = 15, 17, 28, 35, 49
GIVE, HAND_SHAKE, LISTEN, TALK, WATCH = 65, 68, 74, 79, 80

FACE_RANGE = 1.0  # anyone on screen on the facing side (the frame is one "room")
MIN_GAP = 0.05
CLIP_HALF_S = 1.6  # context window: the longest clip the trainer uses (+-0.8..1.6 s)
LONG_TERM_S = 2.0  # long_term events ended more than this before the keyframe (the spec)
MEMORY_S = 6.0  # watch / listen continue up to 6 s
MATCH_RATIO = 1.5  # context matched negatives kept per positive of one crop signature
AMBIGUOUS = "ambiguous"  # evidence of a positive decided only 1.6-2 s back: keyframe excluded
KICK_WINDOW_S = 0.5  # a kick is labelled at the keyframe within 0.5 s of the contact


def on_screen(state, q, f):
    return bool(state.present[q, f]) and 0.0 <= float(state.x[q, f]) <= 1.0


def faces(state, p, q, f):
    """True when p's head points at q (see module docstring)."""
    if p == q or not state.present[p, f] or state.pose[p, f] == LIE or not on_screen(state, q, f):
        return False
    dx = float(state.x[q, f] - state.x[p, f]) * int(state.facing[p, f])
    return MIN_GAP < dx < FACE_RANGE


def moves(state, q, f):
    return bool(state.present[q, f]) and int(state.pose[q, f]) in (WALK, RUN)


def _still(state, p, f0, f1):
    """p stands or sits at the same place with the same facing over frames [f0, f1]."""
    sl = slice(f0, f1 + 1)
    return (
        state.present[p, sl].all()
        and np.isin(state.pose[p, sl], (STAND, SIT)).all()
        and np.ptp(state.x[p, sl]) == 0
        and np.ptp(state.facing[p, sl]) == 0
    )


def _listen(state, p, k, C, G, M):
    """Evidence of 'p listens at k' (None: negative): p silent and still (stands or sits; a
    passer-by does not listen), faces q who talked within M
    frames; context if q talks in the clip window, long_term if q's last talk ended > G frames
    back and p faced q then and stayed still since (one who turned to q after the talk did
    not hear it), else ambiguous."""
    best = None
    if state.talking[p, k] or int(state.pose[p, k]) not in (STAND, SIT):
        return None
    for q in range(state.num_people):
        if not (faces(state, p, q, k) and state.talking[q, max(0, k - M) : k + 1].any()):
            continue
        if state.talking[q, max(0, k - C) : k + C + 1].any():
            return "context"
        last = max(0, k - M) + int(np.flatnonzero(state.talking[q, max(0, k - M) : k + 1])[-1])
        if not (faces(state, p, q, last) and _still(state, p, last, k)):
            continue
        best = "long_term" if k - last > G else (best or AMBIGUOUS)
    return best


def _watch(state, p, k, C, G, M):
    """Evidence of 'p watches at k' (None: negative): p still, faces a mover (context), or
    faced q moving when q was last on screen e (k - M <= e < k) and stayed still since:
    context if q is on screen somewhere in the clip window (k - e <= C, or q comes back by
    k + C), long_term if k - e > G, else ambiguous."""
    if not (state.present[p, k] and int(state.pose[p, k]) in (STAND, SIT)):
        return None
    best = None
    for q in range(state.num_people):
        if faces(state, p, q, k) and moves(state, q, k):
            return "context"
    for q in range(state.num_people):
        if q == p or on_screen(state, q, k):
            continue
        seen = [g for g in range(max(0, k - M), k) if on_screen(state, q, g)]
        if not seen:
            continue
        e = seen[-1]  # last frame q was on screen
        if faces(state, p, q, e) and moves(state, q, e) and _still(state, p, e, k):
            if k - e <= C:
                return "context"
            if any(on_screen(state, q, g) for g in range(k + 1, min(state.num_frames, k + C + 1))):
                return "context"  # q comes back inside the clip window
            best = "long_term" if k - e > G else (best or AMBIGUOUS)
    return best


def person_labels(state, p, k):
    """Labels of person p at keyframe frame k -> list of (AVA id, evidence), ids ascending;
    evidence AMBIGUOUS marks a positive whose keyframe must be excluded."""
    fps = state.fps
    C, G, M = (int(round(v * fps)) for v in (CLIP_HALF_S, LONG_TERM_S, MEMORY_S))
    out = []
    pose = int(state.pose[p, k])
    out.append((POSE_IDS[pose], "temporal" if pose in (WALK, RUN) else "self"))
    arm = int(state.arm[p, k])
    if arm == ARM_HOLD:
        out.append((CARRY, "self"))
    if arm == ARM_PHONE:
        out.append((ANSWER_PHONE, "self"))
    if state.driving[p, k]:
        out.append((DRIVE, "self"))
    v = int(state.vehicle[p, k])
    if (
        v >= 0
        and state.seat[p, k] == 1
        and any(
            q != p and state.driving[q, k] and state.vehicle[q, k] == v
            for q in range(state.num_people)
        )
    ):
        out.append((RIDE, "context"))
    if any(q == p and abs(fk - k) <= KICK_WINDOW_S * fps for q, fk in state.kicks):
        out.append((KICK, "temporal"))
    if any(g == p and f0 <= k < f1 for g, _, f0, f1 in state.gives):
        out.append((GIVE, "temporal"))
    if state.handshake[p, k] >= 0:
        out.append((HAND_SHAKE, "self"))
    ev = _listen(state, p, k, C, G, M)
    if ev:
        out.append((LISTEN, ev))
    if state.talking[p, k] and any(faces(state, p, q, k) for q in range(state.num_people)):
        out.append((TALK, "self"))
    ev = _watch(state, p, k, C, G, M)
    if ev:
        out.append((WATCH, ev))
    return sorted(out)


def _faces_all(state, p, q):
    """[F] bool: faces(state, p, q, f) for every frame f (p != q)."""
    on = state.present[q] & (state.x[q] >= 0) & (state.x[q] <= 1)
    dx = (state.x[q] - state.x[p]) * state.facing[p]
    return state.present[p] & (state.pose[p] != LIE) & on & (dx > MIN_GAP) & (dx < FACE_RANGE)


def matched_negatives(state, p, k, ids):
    """Matched negatives of person p at keyframe frame k -> list of (AVA id, kind), kind in
    context_negative | long_term_negative (module docstring). ids: p's positive AVA ids at k.
    listen: p still and silent, faces q silent all window; long_term also needs p still and
    silent all window and q a talker (talks somewhere in the video). watch: p still, faces the
    way it faced (same place, same facing) when it saw some q move; long_term also needs q off
    screen all window. ride: p in a rear vehicle seat that nobody drives."""
    F = state.num_frames
    C = int(round(CLIP_HALF_S * state.fps))
    w0, w1 = max(0, k - C), min(F - 1, k + C)
    out = []
    if not (state.present[p, k] and int(state.pose[p, k]) in (STAND, SIT)):
        return out
    still_win = _still(state, p, w0, w1)
    others = [q for q in range(state.num_people) if q != p]
    if LISTEN not in ids and not state.talking[p, k]:
        kinds = set()
        for q in others:
            if faces(state, p, q, k) and not state.talking[q, w0 : w1 + 1].any():
                kinds.add("context_negative")
                if state.talking[q].any() and still_win and not state.talking[p, w0 : w1 + 1].any():
                    kinds.add("long_term_negative")
        out += [(LISTEN, kind) for kind in sorted(kinds)]
    if WATCH not in ids:
        kinds = set()
        cache = state.__dict__.setdefault("_watched_from", {})  # per video, per (p, q)
        for q in others:
            if (p, q) not in cache:  # frames where p faces q moving
                cache[p, q] = np.flatnonzero(
                    _faces_all(state, p, q) & state.present[q] & np.isin(state.pose[q], (WALK, RUN))
                )
            g = cache[p, q]
            seen = (state.x[p, g] == state.x[p, k]) & (state.facing[p, g] == state.facing[p, k])
            if not seen.any():
                continue
            kinds.add("context_negative")
            xq = state.x[q, w0 : w1 + 1]
            on = state.present[q, w0 : w1 + 1] & (xq >= 0) & (xq <= 1)
            if still_win and not on.any():
                kinds.add("long_term_negative")
        out += [(WATCH, kind) for kind in sorted(kinds)]
    if RIDE not in ids and state.vehicle[p, k] >= 0 and state.seat[p, k] == 1:
        out.append((RIDE, "context_negative"))
    return sorted(out)


def crop_signature(state, p, k):
    """What p's own box shows over the clip window [k - C, k + C] (C = CLIP_HALF_S): pose and
    facing at k, sits in a vehicle, talks, moves (place or pose), turns, arm states and shakes
    hands anywhere in the window -> hashable tuple. Two person-keyframes with one signature
    look alike to a model that sees only the person's own box (the figure's colour and size
    are drawn per person, independent of the labels)."""
    C = int(round(CLIP_HALF_S * state.fps))
    w = slice(max(0, k - C), min(state.num_frames, k + C + 1))
    return (
        int(state.pose[p, k]),
        int(state.facing[p, k]),
        bool(state.vehicle[p, k] >= 0),
        bool(state.talking[p, w].any()),
        bool(np.ptp(state.x[p, w]) > 0 or np.ptp(state.pose[p, w]) > 0),
        bool(np.ptp(state.facing[p, w]) > 0),
        tuple(sorted(set(state.arm[p, w].tolist()))),
        bool((state.handshake[p, w] >= 0).any()),
    )


def select_matched(evidence, signatures, rng, ratio=MATCH_RATIO):
    """Which evidence rows of one split to keep: every row except the context matched
    negatives beyond the positives' own-crop distribution -> list of bool.

    evidence: rows (video, t, person, AVA id, evidence); signatures: the `crop_signature` of
    each row's person-keyframe (None where not needed: rows other than context and
    context_negative). Per (class, signature) with P positives and N candidate negatives, a
    seeded choice of min(N, ceil(ratio * P)) candidates stays (none when P = 0), so a model
    that reads only the person's own box ranks them as it ranks the positives, up to the
    signatures with fewer candidates than that (kept whole). A class left with fewer
    negatives than positives (SYNTHETIC_DATA.md asks for at least as many) is topped up from
    the candidates not drawn, those of signatures with positives first."""
    positives, candidates = {}, {}
    for i, (row, sig) in enumerate(zip(evidence, signatures)):
        if row[4] == "context":
            positives[row[3], sig] = positives.get((row[3], sig), 0) + 1
        elif row[4] == "context_negative":
            candidates.setdefault((row[3], sig), []).append(i)
    keep = [True] * len(evidence)
    spare = {}  # class -> ([rows of signatures with positives], [rows of the others]) not drawn
    for key in sorted(candidates, key=repr):  # a fixed order: the draws do not depend on hashing
        rows, p = candidates[key], positives.get(key, 0)
        order = rng.permutation(len(rows))
        n = min(len(rows), int(np.ceil(ratio * p)))
        for j in order[n:]:
            keep[rows[j]] = False
        spare.setdefault(key[0], ([], []))[0 if p else 1].extend(rows[j] for j in order[n:])
    for action, (near, far) in sorted(spare.items()):
        wanted = sum(n for (a, _), n in positives.items() if a == action)
        have = sum(len(r) for (a, _), r in candidates.items() if a == action) - len(near) - len(far)
        for pool in (near, far):
            take = [pool[j] for j in rng.permutation(len(pool))[: max(0, wanted - have)]]
            for i in take:
                keep[i] = True
            have += len(take)
    return keep
