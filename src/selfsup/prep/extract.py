"""The ``extract`` stage's work: decode every prepared clip and compute its flow and log-mel.

For each clip of both splits of a prepared video folder (:mod:`selfsup.data.video`), in order:

1. ffmpeg decodes ``video.extract.frames`` frames taken evenly over the clip, scaled to
   ``size x size`` (:func:`~selfsup.data.media.decode_frames`), and its first audio stream as
   mono float32 resampled to ``sample_rate`` (:func:`~selfsup.data.media.decode_audio`).
2. OpenCV computes the optical flow between consecutive sampled frames
   (:func:`~selfsup.prep.flow.optical_flow`), stored as uint8 (clipped to ``+-flow_bound``,
   :func:`~selfsup.data.video_store.quantise_flow`) or float16.
3. The waveform is padded or cropped to the clip duration (``frames / fps`` of the prepared
   dataset, or ``audio_seconds`` where the dataset has no fixed duration: a video folder) and
   turned into a log-mel spectrogram (:func:`~selfsup.prep.audio.log_mel`). A clip without audio
   gets the spectrogram of silence and is listed in ``meta.json`` under ``no_audio``.

A clip ffmpeg cannot decode, or decodes while logging errors (a damaged file; see
:mod:`selfsup.data.media`), is skipped with a warning and listed in ``meta.json`` under
``skipped`` with ffmpeg's error, or, with ``video.extract.on_corrupt: fail``, stops the stage.
The output format is described in :mod:`selfsup.data.video_store`; arrays are written through
memory maps, so the frames of a large dataset never sit in memory together.

Decoding runs ``workers`` ffmpeg processes at a time (threads waiting on subprocesses), one chunk
of clips at a time; flow and log-mel run in the calling thread, with OpenCV and torch on one
thread (:func:`single_threaded`). Each phase is timed separately,
so the reported throughputs are wall-clock rates of that phase alone.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import torch
from numpy.lib.format import open_memmap
from tqdm import tqdm

from selfsup.config import Config
from selfsup.data.media import decode_audio, decode_frames
from selfsup.data.video import SPLITS, load_video_index
from selfsup.data.video_store import quantise_flow
from selfsup.errors import DataError
from selfsup.io import replace_folder
from selfsup.prep.audio import LOG_OFFSET, MEL_SCALE, log_mel, mel_filterbank, n_steps
from selfsup.prep.flow import flow_function, optical_flow

log = logging.getLogger(__name__)

VIDEOFOLDER_AUDIO_SECONDS = 10.0  # audio kept per clip of a video folder, whose clips vary in length
CHUNK = 32                        # clips decoded together before their flow and log-mel are computed


def audio_seconds_of(meta: dict, audio_seconds: float | None = None) -> float:
    """Seconds of audio kept per clip: ``audio_seconds``, else the prepared clips' duration."""
    if audio_seconds is not None:
        return float(audio_seconds)
    if meta.get("frames") and meta.get("fps"):
        return meta["frames"] / meta["fps"]
    return VIDEOFOLDER_AUDIO_SECONDS


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run OpenCV and torch on one thread inside the block: per-clip flow and spectrograms are too
    small to gain from intra-op threads, which only add overhead (tens of times slower for the
    spectrogram when the cores are busy)."""
    cv_threads, torch_threads = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(cv_threads)
        torch.set_num_threads(torch_threads)


def _attempt(fn: Callable[..., np.ndarray], *args: object) -> np.ndarray | DataError:
    """``fn(*args)``, or the DataError it raised (so one bad clip does not stop a thread pool's map)."""
    try:
        return fn(*args)
    except DataError as exc:
        return exc


def _compact(path: Path, n: int) -> None:
    """Keep only the first ``n`` rows of the .npy at ``path``."""
    full = np.load(path, mmap_mode="r")
    tmp = path.with_name(path.name + ".part.npy")
    np.save(tmp, full[:n])
    del full
    os.replace(tmp, path)


def extract(cfg: Config, video_dir: Path, out_dir: Path, workers: int | None = None, progress: bool = True) -> dict:
    """Write frames, flow and log-mel of every clip under ``video_dir`` to ``out_dir``; returns metrics."""
    ecfg = cfg.video.extract
    flow_fn = flow_function(ecfg.flow)  # a flow method this OpenCV lacks fails before anything is decoded
    meta_in, index = load_video_index(video_dir)
    seconds = audio_seconds_of(meta_in, ecfg.audio_seconds)
    n_samples = int(round(seconds * ecfg.sample_rate))
    steps = n_steps(n_samples, ecfg.hop_length)
    filterbank = mel_filterbank(ecfg.n_fft, ecfg.n_mels, ecfg.sample_rate)
    t_frames, size = ecfg.frames, ecfg.size
    flow_dtype = np.uint8 if ecfg.flow_storage == "uint8" else np.float16
    timers = dict.fromkeys(("decode", "audio_decode", "flow", "logmel"), 0.0)
    counts = {s: 0 for s in SPLITS}
    skipped: list[dict] = []
    no_audio: list[dict] = []
    pool = ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1)

    def timed_map(phase: str, fn: Callable[[dict], np.ndarray | DataError], items: list[dict]) -> list:
        start = time.perf_counter()
        out = list(pool.map(fn, items))
        timers[phase] += time.perf_counter() - start
        return out

    def corrupt(split: str, entry: dict, exc: DataError) -> None:
        if ecfg.on_corrupt == "fail":
            raise DataError(f"{split} clip {entry['name']} ({entry['path']}) cannot be decoded: {exc}. Re-encode, "
                            f"replace or delete the file, or set video.extract.on_corrupt=skip (e.g. "
                            f"`-S video.extract.on_corrupt=skip`) to skip such clips") from exc
        log.warning("skipping %s clip %s: %s", split, entry["name"], exc)
        skipped.append({"split": split, "name": entry["name"], "path": entry["path"], "error": str(exc)})

    def fill(tmp: Path) -> None:
        for split in SPLITS:
            entries = index[split]
            n = len(entries)
            if n == 0:
                raise DataError(f"the {split} split of {video_dir} has no clips; add clips (or lower the share "
                                f"held out) and rerun `dvc repro prepare_video`")
            frames_out = open_memmap(tmp / f"frames_{split}.npy", "w+", np.uint8, (n, t_frames, size, size, 3))
            flow_out = open_memmap(tmp / f"flow_{split}.npy", "w+", flow_dtype, (n, t_frames - 1, size, size, 2))
            logmel_out = open_memmap(tmp / f"logmel_{split}.npy", "w+", np.float32, (n, ecfg.n_mels, steps))
            labels, names = [], []
            bar = tqdm(total=n, desc=f"extract {split}", unit="clip", disable=not progress)
            for start in range(0, n, CHUNK):
                chunk = entries[start:start + CHUNK]
                videos = timed_map("decode", lambda e: _attempt(decode_frames, e["path"], t_frames, size), chunk)
                audios = timed_map("audio_decode", lambda e: _attempt(decode_audio, e["path"], ecfg.sample_rate),
                                   [e for e, v in zip(chunk, videos, strict=True) if not isinstance(v, DataError)])
                audio_iter = iter(audios)
                for entry, frames in zip(chunk, videos, strict=True):
                    wave = frames if isinstance(frames, DataError) else next(audio_iter)
                    if isinstance(wave, DataError):
                        corrupt(split, entry, wave)
                        continue
                    i = len(labels)
                    frames_out[i] = frames
                    t0 = time.perf_counter()
                    flow = optical_flow(frames, flow_fn=flow_fn)
                    flow_out[i] = quantise_flow(flow, ecfg.flow_bound) if flow_dtype == np.uint8 else flow
                    t1 = time.perf_counter()
                    if len(wave) == 0:
                        no_audio.append({"split": split, "name": entry["name"]})
                    logmel_out[i] = log_mel(wave, ecfg.sample_rate, ecfg.n_fft, ecfg.hop_length, ecfg.n_mels,
                                            n_samples=n_samples, filterbank=filterbank)
                    timers["flow"] += t1 - t0
                    timers["logmel"] += time.perf_counter() - t1
                    labels.append(int(entry["label"]))
                    names.append(entry["name"])
                bar.update(len(chunk))
            bar.close()
            del frames_out, flow_out, logmel_out
            if not labels:
                raise DataError(f"no clip of the {split} split of {video_dir} could be decoded; see the warnings")
            if len(labels) < n:
                for array in ("frames", "flow", "logmel"):
                    _compact(tmp / f"{array}_{split}.npy", len(labels))
            np.save(tmp / f"labels_{split}.npy", np.asarray(labels, dtype=np.int64))
            (tmp / f"names_{split}.json").write_text(json.dumps(names, indent=1) + "\n")
            counts[split] = len(labels)
        meta = {
            "dataset": meta_in.get("dataset"), "classes": meta_in["classes"], "frames": t_frames, "size": size,
            "flow": {"method": ecfg.flow, "storage": ecfg.flow_storage, "bound": ecfg.flow_bound},
            "audio": {"sample_rate": ecfg.sample_rate, "n_mels": ecfg.n_mels, "n_fft": ecfg.n_fft,
                      "hop_length": ecfg.hop_length, "seconds": seconds, "n_samples": n_samples, "n_steps": steps,
                      "mel_scale": MEL_SCALE, "log_offset": LOG_OFFSET},
            "splits": counts, "skipped": skipped, "no_audio": no_audio,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    start = time.perf_counter()
    try:
        with single_threaded():
            replace_folder(Path(out_dir), fill)
    finally:
        pool.shutdown()
    total = time.perf_counter() - start
    if skipped:
        log.warning("extract skipped %d clip(s) ffmpeg cannot decode or found corrupt: %s", len(skipped),
                    ", ".join(f"{s['split']}/{s['name']}" for s in skipped))
    n_clips = sum(counts.values())
    audio_time = timers["audio_decode"] + timers["logmel"]
    return {
        "clips_train": counts["train"], "clips_test": counts["test"], "skipped": len(skipped),
        "no_audio": len(no_audio), "flow_method": ecfg.flow, "seconds": total,
        "decode_seconds": timers["decode"], "flow_seconds": timers["flow"],
        "audio_decode_seconds": timers["audio_decode"], "logmel_seconds": timers["logmel"],
        "decode_frames_per_s": n_clips * t_frames / max(timers["decode"], 1e-9),
        "flow_frames_per_s": n_clips * (t_frames - 1) / max(timers["flow"], 1e-9),
        "audio_clips_per_s": n_clips / max(audio_time, 1e-9),
    }
