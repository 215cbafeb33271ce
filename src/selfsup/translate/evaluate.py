"""Stage ``translate_eval``'s work: score a translation model on the held-out A test images.

Every score compares against what the right answer is known to be (:mod:`selfsup.translate.domains`):

- **paired error** against each test image's ground-truth B rendering: L1, PSNR and SSIM, with the
  standard error over the test images;
- **content kept**: a judge classifier trained on real domain-B digits (the train half B was drawn
  from, never the test scans) reads the digit of each translation; its accuracy on the ground truths
  themselves is the ceiling;
- **distribution distance**: FID and KID between the translations and real domain-B images, in the
  judge's 128-d feature space (Inception weights cannot be downloaded offline; ``--inception PATH``
  adds the same two in torchvision's Inception-v3 space from a local weights file).

The same scores are computed for three reference outputs: the input itself (identity), the input with
its background painted black by the ``segment`` stage's mask source (the test images' masks estimated
with the resolved ``segment`` settings), and the ground truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from selfsup.config import Config
from selfsup.io import atomic_write, write_json
from selfsup.model_file import load_model_file
from selfsup.prep.segment import estimate_masks
from selfsup.tracking import record_evaluation
from selfsup.translate.domains import Domains, build_domains
from selfsup.translate.judge import JudgeNet, inception_features, judge_outputs, train_judge
from selfsup.translate.metrics import accuracy_with_se, frechet_distance, kernel_distance, paired_metrics
from selfsup.translate.objectives import Translator

BASELINES = ("identity", "black_background", "ground_truth")


def load_translator(path: Path) -> tuple[Translator, Config]:
    """The translation model a ``translate`` stage wrote, in eval mode, with its config."""
    saved, cfg = load_model_file(path, "translate")
    model = Translator(cfg.translate)
    model.load_state_dict(saved["state"])
    return model.eval(), cfg


def black_background(domains: Domains, cfg: Config, progress: bool = True) -> tuple[torch.Tensor, np.ndarray]:
    """The A test images with every pixel outside the ``segment`` mask set to black, and those masks."""
    images = domains.a_test.permute(0, 2, 3, 1).numpy()
    masks = estimate_masks(images, cfg.segment, domains.test_masks, progress=progress)
    return domains.a_test.float() / 255 * torch.from_numpy(masks)[:, None].float(), masks


class Scorer:
    """Scores sets of translated test images against the ground truths, the test labels and real B."""

    def __init__(self, domains: Domains, judge: JudgeNet, seed: int, inception: Path | None = None) -> None:
        self.domains, self.judge, self.seed, self.inception = domains, judge, seed, inception
        self.targets = domains.b_test.float() / 255
        self.labels = torch.from_numpy(domains.test_labels).long()
        real_b = domains.b_train.float() / 255
        self.real_features = judge_outputs(judge, real_b)[1]
        self.real_inception = inception_features(real_b, inception) if inception else None

    def __call__(self, outputs: torch.Tensor) -> dict[str, float]:
        outputs = outputs.float().clamp(0, 1)
        scores = paired_metrics(outputs, self.targets)
        logits, features = judge_outputs(self.judge, outputs)
        scores["content"], scores["content_se"] = accuracy_with_se(logits, self.labels)
        scores["fid"] = frechet_distance(features, self.real_features)
        scores["kid"], scores["kid_std"] = kernel_distance(features, self.real_features, seed=self.seed)
        if self.inception is not None:
            feats = inception_features(outputs, self.inception)
            scores["fid_inception"] = frechet_distance(feats, self.real_inception)
            scores["kid_inception"], scores["kid_inception_std"] = kernel_distance(feats, self.real_inception,
                                                                                   seed=self.seed)
        return scores


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    return (images.float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def run_translate_eval(cfg: Config, data_dir: Path, model_path: Path, out_dir: Path, run_json: Path | None = None,
                       inception: Path | None = None, progress: bool = True) -> dict:
    """Score the model at ``model_path`` and the reference outputs; writes ``metrics.json`` and ``panel.npy``
    (uint8 (3, n, 3, H, W): inputs, translations, ground truths of the first ``translate.eval_panel``
    test images) to ``out_dir``, adds the scores to the training run's MLflow record; returns the metrics."""
    t = cfg.translate
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    model, trained = load_translator(model_path)
    domains = build_domains(data_dir, trained.translate.split_seed)
    judge = train_judge(domains.b_train.float() / 255, torch.from_numpy(domains.b_train_labels), steps=t.judge_steps,
                        seed=cfg.seed, progress=progress)
    scorer = Scorer(domains, judge, cfg.seed, inception)
    translated = model.translate(domains.a_test)
    painted, masks = black_background(domains, cfg, progress)
    metrics = {
        "method": trained.translate.method,
        "n_test": len(domains.a_test),
        "feature_space": "judge" + (" and inception" if inception else ""),
        "translation": scorer(translated),
        "baselines": {"identity": scorer(domains.a_test.float() / 255),
                      "black_background": scorer(painted),
                      "ground_truth": scorer(domains.b_test.float() / 255)},
        "mask_iou": float((masks & domains.test_masks).sum() / max((masks | domains.test_masks).sum(), 1)),
    }
    n = min(t.eval_panel, len(domains.a_test))
    panel = np.stack([_to_uint8(domains.a_test[:n].float() / 255), _to_uint8(translated[:n]),
                      _to_uint8(domains.b_test[:n].float() / 255)])
    out_dir = Path(out_dir)
    atomic_write(out_dir / "panel.npy", lambda f: np.save(f, panel))
    write_json(out_dir / "metrics.json", metrics)
    if run_json is not None and Path(run_json).is_file():
        s = metrics["translation"]
        flat = dict(s)
        flat.update({f"{b}_{k}": v for b, scores in metrics["baselines"].items() for k, v in scores.items()})
        record_evaluation(run_json, flat, "translate_eval", [out_dir / "metrics.json"],
                          f"{metrics['method']}: L1 {s['l1']:.3f}, SSIM {s['ssim']:.3f}, content "
                          f"{100 * s['content']:.1f}%, FID (judge) {s['fid']:.2f} on {metrics['n_test']} test images")
    return metrics
