"""Image pretraining through the loop: deterministic, resumable bit for bit, and stopped cleanly by a NaN loss."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY_RUN, tiny_dataset, write_params
from selfsup.checkpoint import LAST, load_checkpoint
from selfsup.errors import ConfigError, TrainingError
from selfsup.loop import Loop
from selfsup.params import load_config
from selfsup.train import image_loop


def _weights(loop: Loop) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in loop.task.method.state_dict().items()}


# Methods that carry state besides their weights, at sizes that fit the tiny run.
STATEFUL = {
    "moco": {"queue_size": 32, "shuffle_bn_splits": 2},                       # queue, key encoder
    "swav": {"n_prototypes": 10, "queue_length": 32, "queue_start_epoch": 1,  # prototypes, queue
             "freeze_prototypes_iters": 3, "views": {"size": 16, "multi_crop": {"n_small": 2, "size": 8}}},
    "dino": {"out_dim": 32, "views": {"size": 16, "multi_crop": {"n_small": 2, "size": 8}}},  # teacher, centre
    "betavae": {"capacity": True, "lr": 1e-3, "optim": {"name": "adamw"}},     # capacity schedule's progress
    "vqvae": {"n_codes": 8, "code_dim": 4, "hidden": 8, "ema": True,          # EMA codebook, restarts, prior
              "restart_after": 2, "prior_channels": 8, "prior_layers": 1},
}


@pytest.mark.parametrize("method", ["simclr", "barlow", *STATEFUL])
def test_resume_mid_training_equals_uninterrupted_run(project, method) -> None:
    data = tiny_dataset(project / "data")
    cfg = load_config(write_params(project, method=method, **{**TINY_RUN, **STATEFUL.get(method, {})}))

    full = image_loop(cfg, data, project / "ck_full")
    full.fit()

    first = image_loop(cfg, data, project / "ck_split")
    first.fit(until=7)                       # stop between checkpoints (every 5 steps)
    assert load_checkpoint(project / "ck_split" / LAST)["step"] == 5
    second = image_loop(cfg, data, project / "ck_split")
    assert second.try_resume() and second.step == 5
    second.fit()

    assert second.step == full.step == cfg.epochs * (64 // 16)
    a, b = _weights(full), _weights(second)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in full.history.rows] == [r["loss"] for r in second.history.rows]


def test_two_runs_with_one_seed_are_identical_and_a_new_seed_differs(project) -> None:
    data = tiny_dataset(project / "data")
    cfg = load_config(write_params(project, **TINY_RUN))
    runs = [image_loop(cfg, data, project / f"ck{i}") for i in range(2)]
    for t in runs:
        t.fit()
    other = image_loop(load_config(write_params(project, seed=1, **TINY_RUN)), data, project / "ck2")
    other.fit()
    assert runs[0].history.rows == runs[1].history.rows
    assert runs[0].history.rows != other.history.rows


def test_checkpoint_of_another_config_is_not_resumed(project) -> None:
    data = tiny_dataset(project / "data")
    image_loop(load_config(write_params(project, **TINY_RUN)), data, project / "ck").fit(until=5)
    changed = image_loop(load_config(write_params(project, **{**TINY_RUN, "lr": 0.2})), data, project / "ck")
    assert not changed.try_resume() and changed.step == 0


def test_nan_loss_stops_without_writing_a_checkpoint(project) -> None:
    data = tiny_dataset(project / "data")
    cfg = load_config(write_params(project, **{**TINY_RUN, "lr": 1e30, "train": {"checkpoint_every": 1000,
                                                                                    "log_every": 1}}))
    trainer = image_loop(cfg, data, project / "ck")
    with pytest.raises(TrainingError, match=r"non-finite.*lower `lr`"):
        trainer.fit()
    assert not (project / "ck" / LAST).exists()


def test_multi_crop_is_refused_by_a_method_without_it(project) -> None:
    data = tiny_dataset(project / "data")
    cfg = load_config(write_params(project, method="simclr", **{**TINY_RUN, "views": {
        "size": 16, "multi_crop": {"n_small": 2, "size": 8}}}))
    with pytest.raises(ConfigError, match=r"views.multi_crop.n_small=2 but method 'simclr'"):
        image_loop(cfg, data, project / "ck")


def test_a_rerun_that_finds_a_finished_checkpoint_reports_the_same_metrics(project) -> None:
    """Rerunning pretrain after its outputs were deleted resumes at the last step and trains nothing;
    its metrics (the collapse diagnostic scaled by sqrt(d) included) equal the first run's."""
    from selfsup.pretrain import pretrain

    data = tiny_dataset(project / "data")
    cfg = load_config(write_params(project, **TINY_RUN))
    first = pretrain(cfg, data, project / "out1", project / "ck", track=False)
    again = pretrain(cfg, data, project / "out2", project / "ck", track=False)
    assert again == first
    assert first["collapse_std_x_sqrt_d"] == pytest.approx(first["collapse_std"] * TINY_RUN["projector"]["out_dim"]
                                                           ** 0.5)
    assert (project / "out1" / "history.csv").read_text() == (project / "out2" / "history.csv").read_text()


def test_a_checkpoint_of_other_code_is_not_resumed(project, monkeypatch) -> None:
    import selfsup.loop

    data = tiny_dataset(project / "data")
    cfg = load_config(write_params(project, **TINY_RUN))
    image_loop(cfg, data, project / "ck").fit(until=5)
    assert image_loop(cfg, data, project / "ck").try_resume()
    monkeypatch.setattr(selfsup.loop, "code_version", lambda: "other-code")
    assert not image_loop(cfg, data, project / "ck").try_resume()


def test_the_history_carries_each_scheduled_value_of_the_run(project) -> None:
    """lr from the schedule, the EMA momentum from BYOL's cosine and DINO's teacher temperature from its
    warm-up, each at the epoch's last step, next to the loss and the collapse diagnostic."""
    data = tiny_dataset(project / "data")
    byol = image_loop(load_config(write_params(project, method="byol", **TINY_RUN)), data, project / "byol",
                      progress=False)
    rows = byol.fit().rows
    assert list(rows[0]) == ["epoch", "step", "loss", "collapse_std", "lr", "ema_momentum"]
    total = byol.task.total_steps
    assert [r["lr"] for r in rows] == [float(byol.task.lr_schedule[r["step"] - 1]) for r in rows]
    assert [r["ema_momentum"] for r in rows] == [byol.task.method.ema_momentum(r["step"] - 1, total) for r in rows]
    assert rows[0]["ema_momentum"] < rows[-1]["ema_momentum"] <= 1.0

    warmup = {"teacher_temp": 0.07, "warmup_teacher_temp_epochs": 2}
    dino = image_loop(load_config(write_params(project, method="dino", **{**TINY_RUN, **STATEFUL["dino"], **warmup})),
                      data, project / "dino", progress=False)
    temps = [r["teacher_temp"] for r in dino.fit().rows]
    assert temps == [0.04, 0.07, 0.07]  # warm-up over 2 epochs, then constant


def test_each_recipe_sets_its_groups_rates_and_decay_at_every_step(project) -> None:
    """Barlow Twins' biases and BN at 0.024 x the weights' rate; SimSiam's predictor at the peak rate while
    the rest decays; DINO's weight decay on its cosine from 0.04 to 0.4, logged with the run."""
    data = tiny_dataset(project / "data")

    def run(method: str, until: int, **extra: object) -> Loop:
        loop = image_loop(load_config(write_params(project, method=method, **{**TINY_RUN, **extra})), data,
                          project / method, progress=False)
        loop.fit(until=until)
        return loop

    barlow = run("barlow", 6)
    lr = float(barlow.task.lr_schedule[5])
    assert [g["lr"] for g in barlow.task.optimizer.param_groups] == pytest.approx([lr, 0.024 * lr])

    simsiam = run("simsiam", 10)
    peak, lr = simsiam.task.peak_lr, float(simsiam.task.lr_schedule[9])
    assert lr < 0.5 * peak
    predictor = {id(p) for p in simsiam.task.method.predictor.parameters()}
    for g in simsiam.task.optimizer.param_groups:
        in_predictor = {id(p) in predictor for p in g["params"]}
        assert in_predictor in ({True}, {False})
        assert g["lr"] == pytest.approx(peak if in_predictor == {True} else lr)

    dino = run("dino", 12, **STATEFUL["dino"])
    decays = [r["weight_decay"] for r in dino.history.rows]
    wd = dino.task.weight_decay_schedule
    assert decays == [float(wd[r["step"] - 1]) for r in dino.history.rows] and decays == sorted(decays)
    assert 0.04 <= decays[0] < decays[-1] < 0.4
    decaying = [g for g in dino.task.optimizer.param_groups if g["decay"]]
    assert decaying and all(g["weight_decay"] == pytest.approx(float(wd[11])) for g in decaying)
