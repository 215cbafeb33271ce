"""Throughput of each step of the ``extract`` stage, measured side by side in one run.

On a prepared video folder (``--video``; by default the default synthetic-actions dataset is
built into a temporary folder first, and its generation time printed), over the same clips:

1. video decoding with ffmpeg (frames sampled and scaled as ``video.extract`` says), one ffmpeg
   process at a time and ``--workers`` at a time;
2. optical flow with Farneback and with DIS on the decoded frames (OpenCV on one thread, as in
   the stage);
3. audio: ffmpeg decoding to mono float32 plus the log-mel spectrogram, and the log-mel alone.

    python benchmarks/extract_throughput.py                         # builds the default 512 clips
    python benchmarks/extract_throughput.py --video data/video --clips 128

The rates are also written to ``--out``, the JSON record BENCHMARKS.md is generated from.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

from selfsup.data.media import decode_audio, decode_frames, ffmpeg_exe
from selfsup.data.video import load_video_index, prepare_video
from selfsup.io import write_json
from selfsup.params import load_config
from selfsup.prep.audio import log_mel, mel_filterbank
from selfsup.prep.extract import audio_seconds_of, single_threaded
from selfsup.prep.flow import flow_function, optical_flow


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def machine() -> str:
    version = " ".join(subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True)
                       .stdout.split()[:3])
    return (f"{cpu_model()} ({platform.machine()}), {os.cpu_count()} CPUs, load average "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; Python {platform.python_version()}, numpy "
            f"{np.__version__}, OpenCV {cv2.__version__}, torch {torch.__version__}; {version}")


def rate(n: float, seconds: float) -> str:
    return f"{n / seconds:9.1f}/s  ({n:g} in {seconds:.2f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, help="prepared video folder (default: build the default dataset)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--clips", type=int, default=0, help="clips to time (0: all)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel ffmpeg decoders")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/records/extract_throughput.json"),
                        help="JSON record of the rates (BENCHMARKS.md is generated from it)")
    args = parser.parse_args()
    cfg = load_config(args.params)
    ecfg = cfg.video.extract
    print(f"machine: {machine()}")
    record: dict = {"machine": machine(), "workers": args.workers}

    with tempfile.TemporaryDirectory() as tmp:
        video_dir = args.video
        if video_dir is None:
            video_dir = Path(tmp) / "video"
            start = time.perf_counter()
            meta = prepare_video(cfg, video_dir, workers=args.workers, progress=False)
            seconds = time.perf_counter() - start
            n = sum(meta["splits"].values())
            print(f"generate {meta['dataset']} ({n} clips, {meta['frames']} frames of {meta['size']}px, "
                  f"{args.workers} workers): {rate(n, seconds)}")
        meta, index = load_video_index(video_dir)
        paths = [e["path"] for s in ("train", "test") for e in index[s]]
        paths = paths[:args.clips] if args.clips else paths
        n, t = len(paths), ecfg.frames
        record.update(clips=n, frames=t, size=ecfg.size, sample_rate=ecfg.sample_rate, n_mels=ecfg.n_mels)
        print(f"{n} clips from {video_dir}: {t} frames of {ecfg.size}px, audio {ecfg.sample_rate} Hz, "
              f"{ecfg.n_mels} mels")

        start = time.perf_counter()
        clips = [decode_frames(p, t, ecfg.size) for p in paths]
        record["decode_frames_per_s"] = n * t / (time.perf_counter() - start)
        print(f"decode video, 1 ffmpeg at a time:     {rate(n * t, time.perf_counter() - start)} frames")
        with ThreadPoolExecutor(args.workers) as pool:
            start = time.perf_counter()
            list(pool.map(lambda p: decode_frames(p, t, ecfg.size), paths))
            record["decode_parallel_frames_per_s"] = n * t / (time.perf_counter() - start)
            print(f"decode video, {args.workers} ffmpeg at a time:     "
                  f"{rate(n * t, time.perf_counter() - start)} frames")

        n_samples = int(round(audio_seconds_of(meta) * ecfg.sample_rate))
        filterbank = mel_filterbank(ecfg.n_fft, ecfg.n_mels, ecfg.sample_rate)
        with single_threaded():
            for method in ("farneback", "dis"):
                fn = flow_function(method)
                start = time.perf_counter()
                for frames in clips:
                    optical_flow(frames, flow_fn=fn)
                record[f"flow_{method}_pairs_per_s"] = n * (t - 1) / (time.perf_counter() - start)
                print(f"flow {method:<10s} (1 thread):       {rate(n * (t - 1), time.perf_counter() - start)} "
                      f"frame pairs")
            start = time.perf_counter()
            waves = [decode_audio(p, ecfg.sample_rate) for p in paths]
            decoded = time.perf_counter() - start
            start = time.perf_counter()
            for wave in waves:
                log_mel(wave, ecfg.sample_rate, ecfg.n_fft, ecfg.hop_length, ecfg.n_mels, n_samples=n_samples,
                        filterbank=filterbank)
            logmel = time.perf_counter() - start
        print(f"audio: decode + log-mel (1 at a time): {rate(n, decoded + logmel)} clips")
        print(f"audio: log-mel alone:                  {rate(n, logmel)} clips")
    record.update(audio_clips_per_s=n / (decoded + logmel), logmel_clips_per_s=n / logmel)
    write_json(args.out, record)


if __name__ == "__main__":
    main()
