"""Aff-Wild2's organiser crops as AlignedFaces chunks: face224 and face48 with no decoding and no detection.

The layout (`cropped_aligned/<video>/<NNNNN>.jpg`): 112x112 aligned RGB faces, JPEG; the number is the 1-based
frame number (`00001.jpg` is the video's first frame, row 0 here; a `00000.jpg` is an error: a 0-based folder
would be read one frame off); a number with no file is a frame where the organisers' detector found no face (valid
False, zero crops, like our frames without a face); two-person videos have one folder per person, `<video>_left/`
and `<video>_right/`. The folder cannot say how many frames the video has (trailing frames without a face leave no
file), so the count comes from outside (the video's container, or the annotation file's lines when the video is
absent) and trailing frames are invalid rows. Files that
are not numbered images (`.DS_Store`, `Thumbs.db`, `._00001.jpg`, notes) are ignored.

Face48 is made as the video path makes it: luma (OpenCV's RGB->gray), then area averaging down to 48x48, here
straight from the 112 crop (the video path averages its 224 warp; going through an upsampled 224 would only add
interpolation blur). Face224 is the crop upsampled (bilinear): no detail beyond the 112 source.

Their framing is not ours. Our template (features.face.template) puts dlib's mean shape with its unit box at 0.7
of the crop and the rigid points' centroid at the centre: at 112 px the eye centres sit at y = 44, 32 px apart,
the mouth corners at y = 78 and the chin at y = 103, with the brows and forehead in view. The organisers' crops
come from their own detector and 5-point alignment (RetinaFace, as the ABAW papers describe it); if their template
is the usual 112x112 five-point one (ArcFace's: eyes at y = 51.6, 35.2 px apart, mouth corners at y = 92.3), faces
are ~1.13x larger and ~7.5 px lower than ours: less forehead, the chin at or past the bottom edge. Features from
the two framings are not interchangeable (a model trained on one should be tested on the same one), which is why
the face source is part of the fingerprint. No landmarks: the crops carry none (NaN).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from features.errors import BadInputError
from features.face import AlignedFaces, gray_crops

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass
class CropFolder:
    """The numbered crops of one video (or one person of it): frame index (0-based) -> file."""

    folder: Path
    files: dict[int, Path]

    @property
    def last_frame(self) -> int:
        """Frames the folder proves exist: the highest number (trailing frames without a face leave no file)."""
        return max(self.files) + 1 if self.files else 0


def scan_crop_folder(folder: str | Path) -> CropFolder:
    """List a cropped_aligned folder: numbered images only; two files for one frame number is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInputError(folder, "folder of aligned faces not found",
                            "expected cropped_aligned/<video>/00001.jpg ... (or <video>_left/, <video>_right/)")
    files: dict[int, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_EXTS or not p.stem.isdigit() or not p.is_file():
            continue
        if int(p.stem) < 1:   # a 0-based folder would be read one frame off against the video and its labels
            raise BadInputError(folder, f"{p.name} is numbered 0, but the organisers number crops from 1 "
                                "(00001.jpg is the video's first frame): this folder looks 0-based, and read as "
                                "it is every crop would land one frame late",
                                "renumber its images from 00001.jpg (add 1 to each number), or use the "
                                "organisers' cropped_aligned folder as released")
        t = int(p.stem) - 1
        if t in files:
            raise BadInputError(p, f"frame {t + 1} has two images here (also {files[t].name})",
                                "keep one image per frame number")
        files[t] = p
    if not files:
        raise BadInputError(folder, "no numbered images (00001.jpg ...) in this folder",
                            "point to the cropped_aligned folder of this video")
    return CropFolder(folder, files)


def read_crop(path: Path) -> np.ndarray:
    """One crop as RGB uint8 [s, s, 3]; BadInputError naming the file if it is unreadable, truncated or not square."""
    data = path.read_bytes()
    # cv2.imread decodes a truncated JPEG without failing (gray below the cut, a warning on stderr); imdecode refuses
    # it today, and the end-of-image marker check keeps that true whatever OpenCV does.
    if path.suffix.lower() in (".jpg", ".jpeg"):
        if not data:
            raise BadInputError(path, "this image file is empty",
                                "re-extract the cropped_aligned folder from its archive")
        if not data.startswith(b"\xff\xd8"):   # the start-of-image marker: another kind of file named .jpg
            raise BadInputError(path, f"not a JPEG image (it starts with {data[:8]!r})",
                                "re-extract the cropped_aligned folder from its archive")
        if not data.rstrip(b"\0\r\n ").endswith(b"\xff\xd9"):
            raise BadInputError(path, "this JPEG is truncated (no end-of-image marker)",
                                "re-extract the cropped_aligned folder from its archive")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if img is None:
        raise BadInputError(path, "cannot decode this image (corrupt, empty or not an image)",
                            "re-extract the cropped_aligned folder from its archive")
    if img.shape[0] != img.shape[1]:
        raise BadInputError(path, f"crop is {img.shape[1]}x{img.shape[0]}, not square",
                            "aligned crops are square (112x112 in Aff-Wild2)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def crop_params(crop_size: int = 224, gray_size: int = 48) -> dict:
    """What changes `iter_crop_folder`'s output, for the fingerprint (the folder itself is the caller's)."""
    return {"crops": "1-based numbered images, missing = no face", "face224": "resize (linear up, area down)",
            "face48": "luma, area resize", "crop_size": crop_size, "gray_size": gray_size, "landmarks": "none"}


def iter_crop_folder(folder: str | Path | CropFolder, n_frames: int, chunk_size: int = 64, slack: int = 0,
                     crop_size: int = 224, gray_size: int = 48, start: int = 0) -> Iterator[AlignedFaces]:
    """AlignedFaces chunks for frames start..n_frames-1 of a video from its organiser crops, in order.

    `n_frames` comes from the video (or its annotation file); frames without a crop are invalid. Crops numbered
    past `n_frames` are an error unless within `slack` frames (decoders disagree by a frame or two), then unused.
    Every crop must have the size of the folder's first (also when resuming at `start` > 0).
    """
    crops = folder if isinstance(folder, CropFolder) else scan_crop_folder(folder)
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if crops.last_frame > n_frames + slack:
        raise BadInputError(crops.files[crops.last_frame - 1],
                            f"crop of frame {crops.last_frame} but the video has {n_frames} frames"
                            + (f" (slack {slack})" if slack else ""),
                            "these crops belong to another video, or the frame count is wrong")
    first: tuple | None = None  # the first crop's shape: one size per folder
    if start and crops.files:
        first = read_crop(crops.files[min(crops.files)]).shape
    for lo in range(start, n_frames, chunk_size):
        n = min(chunk_size, n_frames - lo)
        valid = np.zeros(n, bool)
        face224 = np.zeros((n, crop_size, crop_size, 3), np.uint8)
        face48 = np.zeros((n, gray_size, gray_size), np.uint8)
        for i in range(n):
            path = crops.files.get(lo + i)
            if path is None:
                continue
            img = read_crop(path)
            first = first or img.shape
            if img.shape != first:
                raise BadInputError(path, f"crop is {img.shape[1]}x{img.shape[0]}, the folder's first "
                                          f"{first[1]}x{first[0]}", "one crop size per folder")
            up = cv2.INTER_LINEAR if img.shape[0] < crop_size else cv2.INTER_AREA
            face224[i] = cv2.resize(img, (crop_size, crop_size), interpolation=up)
            face48[i] = gray_crops(img[None], gray_size)[0]
            valid[i] = True
        yield AlignedFaces(landmarks=np.full((n, 68, 2), np.nan, np.float32), valid=valid,
                           face224=face224, face48=face48)
