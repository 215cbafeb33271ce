"""model.pt rebuilds the trained method's feature extractor; evaluate reports it next to a random one."""

from __future__ import annotations

import torch

from conftest import TINY_RUN, tiny_dataset, write_params
from selfsup.augment.views import EvalTransform
from selfsup.data.store import images_tensor, load_meta, load_split
from selfsup.eval.evaluate import evaluate, load_model, summary
from selfsup.params import load_config
from selfsup.pretrain import pretrain


def test_saved_model_gives_the_trained_features_and_evaluate_adds_finetuning(project) -> None:
    data = tiny_dataset(project / "data")
    cfg = load_config(write_params(project, method="simclr", **{**TINY_RUN, "eval": {
        "linear": {"epochs": 5}, "finetune": {"enabled": True, "epochs": 2, "batch_size": 16}}}))
    pretrain(cfg, data, project / "out", project / "ck", track=False)

    trained, view_size, saved_cfg = load_model(project / "out" / "model.pt")
    random_init, _, _ = load_model(project / "out" / "model.pt", random_init=True)
    assert saved_cfg == cfg and view_size == 16
    meta = load_meta(data)
    x = EvalTransform(16, meta["mean"], meta["std"])(images_tensor(load_split(data, "test").images[:8]))
    state = torch.load(project / "ck" / "last.pt", weights_only=True)["modules"]["model"]
    backbone_state = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    assert all(torch.equal(trained.state_dict()[k], v) for k, v in backbone_state.items())
    assert not torch.equal(trained.eval()(x), random_init.eval()(x))

    pixels = {"raw_pixels": {"linear_top1": 0.1, "knn_top1": 0.2}}
    supervised = {"top1": 0.8, "linear_top1": 0.7, "knn_top1": 0.6}
    metrics = evaluate(cfg, data, project / "out" / "model.pt", {**pixels, "supervised": supervised})
    for key in ("linear_top1", "knn_top1", "random_linear_top1", "finetune_top1", "random_finetune_top1"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["gain_linear"] == metrics["linear_top1"] - metrics["random_linear_top1"]
    assert metrics["pixels_knn_top1"] == 0.2
    assert metrics["chance_top1"] == 1 / 4  # the tiny dataset has 4 classes
    assert (metrics["supervised_top1"], metrics["supervised_linear_top1"], metrics["supervised_knn_top1"]) == (
        0.8, 0.7, 0.6)
    assert metrics["linear_fraction_of_supervised"] == metrics["linear_top1"] / 0.8
    assert "supervised 80.0% (its frozen features 70.0% / 60.0%)" in summary(metrics)


def test_evaluate_without_a_supervised_baseline_reports_no_supervised_keys(project) -> None:
    """Baseline records from before the supervised row, and benchmarks that pass raw pixels only."""
    data = tiny_dataset(project / "data")
    cfg = load_config(write_params(project, method="simclr", **{**TINY_RUN, "epochs": 1}))
    pretrain(cfg, data, project / "out", project / "ck", track=False)
    metrics = evaluate(cfg, data, project / "out" / "model.pt", {"raw_pixels": {"linear_top1": 0.1, "knn_top1": 0.2}})
    assert not {k for k in metrics if "supervised" in k}
    assert "supervised" not in summary(metrics) and metrics["pixels_linear_top1"] == 0.1


def _digits(project, **spec: object):  # noqa: ANN202 - a prepared digits-bg folder
    from selfsup.data.prepare import prepare_images
    from selfsup.params import config_from_dict

    cfg = config_from_dict({"data": {"digits_bg": {"train_per_scan": 1, "test_per_scan": 1, **spec}}})
    prepare_images(cfg, project / "digits")
    return project / "digits"


def test_evaluate_scores_disentanglement_and_a_generative_models_reconstructions(project) -> None:
    data = _digits(project)
    cfg = load_config(write_params(project, method="betavae", **{**TINY_RUN, "batch_size": 64, "epochs": 2,
                                                                  "lr": 1e-3, "optim": {"name": "adamw"},
                                                                  "eval": {"linear": {"epochs": 5}}}))
    pretrain(cfg, data, project / "out", project / "ck", track=False)
    metrics = evaluate(cfg, data, project / "out" / "model.pt", {"raw_pixels": {"linear_top1": 0.1, "knn_top1": 0.2}})
    for prefix in ("", "random_"):
        assert 0.0 <= metrics[f"{prefix}betavae_score"] <= 1.0 and 0.0 <= metrics[f"{prefix}mig"] <= 1.0
        assert {f"{prefix}mig_{name}" for name in ("digit", "hue", "scale", "x", "y", "background")} <= set(metrics)
    assert metrics["betavae_chance"] == 1 / 6
    # the mean train image as every reconstruction: a fixed, positive error; the model's is measured against it
    assert metrics["mean_image_mse"] > 0
    assert metrics["recon_mse_ratio"] == metrics["recon_mse"] / metrics["mean_image_mse"]
    assert metrics["kl"] > 0 and 0 <= metrics["active_units"] <= 10


def test_evaluate_reports_a_vqvaes_code_usage_and_nothing_for_data_without_factors(project) -> None:
    data = tiny_dataset(project / "data")
    cfg = load_config(write_params(project, method="vqvae", **{**TINY_RUN, "epochs": 1, "n_codes": 8, "code_dim": 4,
                                                                "hidden": 8, "prior_channels": 8}))
    pretrain(cfg, data, project / "out", project / "ck", track=False)
    metrics = evaluate(cfg, data, project / "out" / "model.pt", {"raw_pixels": {"linear_top1": 0.1, "knn_top1": 0.2}})
    assert not {k for k in metrics if "betavae" in k or "mig" in k}
    assert 1 <= metrics["codes_used"] <= 8 and 1.0 <= metrics["perplexity"] <= metrics["codes_used"] + 1e-6
    assert "kl" not in metrics and "active_units" not in metrics
