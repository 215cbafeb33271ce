"""Encode and decode real media files with ffmpeg (the binary of ``imageio-ffmpeg``, driven by
``ffmpeg-python``).

- :func:`encode_clip` writes uint8 RGB frames and an optional mono float waveform to an MP4 with
  H.264 video (yuv420p, odd sides padded to even, ``+faststart``) and AAC audio. ffmpeg writes a
  temporary file in the target folder, which is renamed into place once complete.
- :func:`decode_frames` decodes every frame of the first video stream, scaled so the shorter side
  is ``size`` and centre-cropped to ``size x size``, piped as raw rgb24 (the frame count comes
  from the byte length; there is no ffprobe), then samples ``n_frames`` evenly over them.
- :func:`decode_audio` decodes the first audio stream as mono float32 (``f32le``) resampled by
  ffmpeg to ``sample_rate``; a file without an audio stream gives an empty array.

A file ffmpeg cannot decode (missing, truncated, not a media file, no video stream) raises
:class:`~selfsup.errors.DataError` naming the file and the last meaningful line ffmpeg wrote to
stderr. A damaged file often decodes with status 0: ffmpeg conceals the bad packets (a truncated
MP4 whose index survived, zeroed or flipped bytes in the media data) and only logs errors. ffmpeg
runs at loglevel ``error``, so on a healthy file it writes nothing to stderr; any line it writes
(:func:`decoder_errors`) marks the file corrupt, and the DataError gives the first one. ffmpeg's
``-xerror`` is not used: it lets a truncated video stream and errors logged while probing the
streams through with status 0, so stderr has to be read anyway.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import ffmpeg
import imageio_ffmpeg
import numpy as np

from selfsup.errors import DataError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ogv")

_PREFIX = re.compile(r"^(\[[^\]]*\]\s*)+")
_WRAPPERS = ("Error opening input", "Error opening output", "Conversion failed", "Exiting normally")
_NO_STREAM = "does not contain any stream"
_REPEATED = "Last message repeated"


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    return imageio_ffmpeg.get_ffmpeg_exe()


def last_ffmpeg_line(stderr: bytes | str) -> str:
    """The last meaningful line of ffmpeg's stderr: ``[demuxer @ 0x..]`` prefixes stripped, and
    generic wrappers ("Error opening input files: ...") passed over when a specific line exists."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    lines = [_PREFIX.sub("", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    specific = [line for line in lines if not line.startswith(_WRAPPERS)]
    if specific:
        return specific[-1]
    return lines[-1] if lines else "no message"


def decoder_errors(stderr: bytes | str) -> list[str]:
    """The error lines of ffmpeg's stderr at loglevel ``error`` (``[decoder @ 0x..]`` prefixes
    stripped, blank and "Last message repeated" lines dropped): empty for a healthy file."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    lines = [_PREFIX.sub("", line).strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith(_REPEATED)]


def _run(stream: ffmpeg.nodes.OutputStream, path: Path, what: str,
         stdin: bytes | None = None) -> tuple[bytes, bytes, bool]:
    """Run an ffmpeg graph at loglevel ``error``; returns (stdout, stderr, whether it succeeded)."""
    stream = stream.global_args("-hide_banner", "-nostdin", "-loglevel", "error", "-filter_threads", "1")
    try:
        out, err = stream.run(cmd=ffmpeg_exe(), input=stdin, capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as exc:
        return exc.stdout or b"", exc.stderr or b"", False
    except OSError as exc:
        raise DataError(f"cannot run ffmpeg ({ffmpeg_exe()}) to {what} {path}: {exc}") from exc
    return out, err, True


def _check_input(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"cannot decode {path}: no such file")


def _failed(path: Path, what: str, stderr: bytes) -> DataError:
    return DataError(f"ffmpeg cannot {what} {path}: {last_ffmpeg_line(stderr)}")


def _check_clean(path: Path, what: str, stderr: bytes) -> None:
    """Raise a DataError with the first decoder error when ffmpeg logged any (it exited 0)."""
    errors = decoder_errors(stderr)
    if errors:
        more = f" (+{len(errors) - 1} more error lines)" if len(errors) > 1 else ""
        raise DataError(f"ffmpeg found corrupt data when asked to {what} {path}: {errors[0]}{more}")


def encode_clip(path: Path, frames: np.ndarray, audio: np.ndarray | None, fps: float,
                sample_rate: int = 16000, crf: int = 18) -> None:
    """Write ``frames`` (uint8 (T, H, W, 3) RGB) and ``audio`` (float32 mono in [-1, 1], or None)
    to an MP4 at ``path``: H.264 (libx264, yuv420p, ``crf``) and AAC, atomically.

    Odd frame sides are padded by one black row/column (yuv420p needs even sides).
    """
    path = Path(path)
    frames = np.ascontiguousarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise DataError(f"frames for {path} must be uint8 (T, H, W, 3) with T >= 1, got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_video = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_audio = None
    try:
        video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", framerate=fps)
        if h % 2 or w % 2:
            video = video.filter("pad", "ceil(iw/2)*2", "ceil(ih/2)*2")
        streams = [video]
        options = {"vcodec": "libx264", "pix_fmt": "yuv420p", "crf": crf, "preset": "veryfast", "threads": 1,
                   "movflags": "+faststart", "format": "mp4"}
        if audio is not None:
            wave = np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)
            fd, tmp_audio = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".f32")
            with os.fdopen(fd, "wb") as f:
                f.write(wave.astype("<f4").tobytes())
            streams.append(ffmpeg.input(tmp_audio, format="f32le", ar=sample_rate, ac=1))
            options.update(acodec="aac", audio_bitrate="64k")
        out = ffmpeg.output(*streams, tmp_video, **options).overwrite_output()
        _, stderr, ok = _run(out, path, "encode", stdin=frames.tobytes())
        if not ok:
            raise DataError(f"ffmpeg failed to encode {path} ({t} frames {w}x{h}): {last_ffmpeg_line(stderr)}")
        with open(tmp_video, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_video, path)
    finally:
        Path(tmp_video).unlink(missing_ok=True)
        if tmp_audio is not None:
            Path(tmp_audio).unlink(missing_ok=True)


def even_indices(n_total: int, n_frames: int) -> np.ndarray:
    """``n_frames`` indices spread evenly over ``0..n_total-1`` (first and last included)."""
    return np.rint(np.linspace(0, n_total - 1, n_frames)).astype(np.int64)


def decode_frames(path: Path, n_frames: int | None, size: int) -> np.ndarray:
    """uint8 (n_frames, size, size, 3): every frame decoded (shorter side scaled to ``size``,
    centre-cropped), then ``n_frames`` of them taken evenly over the clip (repeats when shorter);
    ``n_frames=None`` returns every decoded frame."""
    path = Path(path)
    _check_input(path)
    stream = (ffmpeg.input(str(path), threads=1)
              .output("pipe:", map="0:v:0", format="rawvideo", pix_fmt="rgb24", an=None,
                      vf=f"scale={size}:{size}:force_original_aspect_ratio=increase,crop={size}:{size}"))
    out, stderr, ok = _run(stream, path, "decode")
    frame_bytes = size * size * 3
    n_total = len(out) // frame_bytes
    if not ok:
        raise _failed(path, "decode", stderr)
    _check_clean(path, "decode", stderr)
    if n_total == 0:
        raise DataError(f"ffmpeg decoded no video frames from {path}: {last_ffmpeg_line(stderr)}")
    frames = np.frombuffer(out, dtype=np.uint8, count=n_total * frame_bytes).reshape(n_total, size, size, 3)
    if n_frames is None:
        return frames.copy()
    return frames[even_indices(n_total, n_frames)].copy()


def decode_audio(path: Path, sample_rate: int) -> np.ndarray:
    """float32 (n,): the first audio stream, mono, resampled to ``sample_rate``; empty when the
    file has no audio stream."""
    path = Path(path)
    _check_input(path)
    stream = ffmpeg.input(str(path), threads=1).output("pipe:", map="0:a:0?", format="f32le", ac=1,
                                                       ar=sample_rate, vn=None)
    out, stderr, ok = _run(stream, path, "decode audio of")
    text = stderr.decode(errors="replace")
    if not ok and _NO_STREAM in text:
        return np.zeros(0, dtype=np.float32)
    if not ok:
        raise _failed(path, "decode audio of", stderr)
    _check_clean(path, "decode audio of", stderr)
    return np.frombuffer(out, dtype="<f4", count=len(out) // 4).astype(np.float32)
