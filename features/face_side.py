"""Which of a frame's faces is "ours": the largest, or, in Aff-Wild2's two-person videos, the left or right person.

`<video>_left.txt` / `<video>_right.txt` annotate one person each of the same video, so each entry must follow its
own person. The left-most (right-most) face is acquired; the caller keeps it by tracking; after a loss it is
re-acquired only on its own side of its *partner*: the nearest face on the far side of ours, remembered from the
last frame where both were seen. Sides are relative order, never frame halves: both people may move across the
frame. The partner never replaces our face, even when it is the only face in view (the frame is then invalid).
Frame halves serve only before anybody has been seen beside us, for a lone face.

Boxes are (left, top, right, bottom) in frame pixels. Used by `FaceTracker` (dlib detections) and by
`OpenFaceLandmarks` (the faces of a multi-face OpenFace CSV).
"""
from __future__ import annotations

import numpy as np

SIDES = ("largest", "left", "right")
Box = tuple[float, float, float, float]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _centre(box: Box) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _dist(a: Box | None, b: Box) -> float:
    return float(np.hypot(*(_centre(a) - _centre(b)))) if a is not None else np.inf


class SidePicker:
    """Chooses our face among a frame's boxes when none is tracked, and remembers the partner while one is."""

    def __init__(self, side: str = "largest"):
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        self.side = side
        self.reset()

    def reset(self) -> None:
        """Forget the partner (start of a new video)."""
        self.partner: Box | None = None

    def state(self) -> list | None:
        """The remembered partner, as JSON (to resume a video mid-way)."""
        return None if self.partner is None else [float(v) for v in self.partner]

    def restore(self, state: list | None) -> None:
        """Continue from a `state()`."""
        self.partner = None if state is None else tuple(float(v) for v in state)

    def _far(self, box: Box, ref: Box) -> bool:
        """Whether `box` lies on the far side of `ref` (right of it when we follow the left person)."""
        dx = _centre(box)[0] - _centre(ref)[0]
        return dx > 0 if self.side == "left" else dx < 0

    def seen(self, ours: Box, boxes: list[Box]) -> None:
        """Our face is `ours` in a frame with these boxes: note the nearest face on its far side, if any."""
        if self.side == "largest":
            return
        near = 0.5 * (ours[2] - ours[0])  # a box this close is our own face, however poorly boxed
        far = [b for b in boxes if _dist(ours, b) > near and iou(ours, b) <= 0.3 and self._far(b, ours)]
        if far:
            self.partner = min(far, key=lambda b: _dist(ours, b))

    def pick(self, boxes: list[Box], width: int, last: Box | None) -> int | None:
        """Index of our face among `boxes` (None: not in this frame); `last` is where it was last seen."""
        if not boxes:
            return None
        if self.side == "largest":
            return max(range(len(boxes)), key=lambda i: (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1]))
        candidates = list(range(len(boxes)))
        if self.partner is not None:
            # The partner claims the box nearest its last one, unless that box is nearer where our face was; its
            # memory follows it only on a clear claim, so an ambiguous frame stays invalid and changes nothing.
            j = min(candidates, key=lambda i: _dist(self.partner, boxes[i]))
            d_partner, d_ours = _dist(self.partner, boxes[j]), _dist(last, boxes[j])
            if d_partner < d_ours:
                candidates.remove(j)
                if d_partner <= 0.5 * d_ours:
                    self.partner = boxes[j]
            candidates = [i for i in candidates if not self._far(boxes[i], self.partner)]
        elif len(candidates) == 1:
            # Nobody seen beside us yet: a lone face counts only on our half of the frame.
            off = _centre(boxes[0])[0] - width / 2
            candidates = candidates if (off < 0 if self.side == "left" else off > 0) else []
        if not candidates:
            return None
        sign = 1 if self.side == "left" else -1
        ours = min(candidates, key=lambda i: sign * _centre(boxes[i])[0])
        self.seen(boxes[ours], boxes)
        return ours
