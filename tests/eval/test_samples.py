"""The generative methods' image grids: which files, what they show, byte-identical on a rerun; the stage
refuses a model that does not generate."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from conftest import REPO, TINY_RUN, tiny_dataset, write_params
from selfsup.augment.views import EvalTransform
from selfsup.data.store import load_meta, load_split
from selfsup.eval.evaluate import load_method
from selfsup.eval.samples import SCALE, write_samples
from selfsup.params import load_config
from selfsup.pretrain import pretrain

VQ = {"n_codes": 8, "code_dim": 4, "hidden": 8, "prior_channels": 8, "prior_layers": 1}


@pytest.mark.parametrize(("method", "knobs", "files"), [
    ("betavae", {"latent_dim": 4}, ["reconstructions.png", "samples.png", "traversals.png"]),
    ("vqvae", VQ, ["reconstructions.png", "samples.png"]),
])
def test_grids_are_written_and_identical_on_a_rerun(project, method, knobs, files) -> None:
    data = tiny_dataset(project / "data")
    cfg = load_config(write_params(project, method=method, **{**TINY_RUN, "epochs": 1, "lr": 1e-3,
                                                               "optim": {"name": "adamw"}, **knobs}))
    pretrain(cfg, data, project / "out", project / "ck", track=False)
    model, size, _ = load_method(project / "out" / "model.pt")
    meta = load_meta(data)
    transform = EvalTransform(size, meta["mean"], meta["std"])
    images = load_split(data, "test").images
    first = write_samples(model, images, transform, project / "a", seed=3)
    second = write_samples(model, images, transform, project / "b", seed=3)
    assert [p.name for p in first] == files
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, second, strict=True))
    # 16 images in two rows of 16 px with 1 px padding, drawn at SCALE
    assert Image.open(first[0]).size == (SCALE * (16 * 17 + 1), SCALE * (2 * 17 + 1))
    if method == "betavae":  # one row of 7 values per latent dimension (4 here)
        assert Image.open(first[2]).size == (SCALE * (7 * 17 + 1), SCALE * (4 * 17 + 1))
    other = write_samples(model, images, transform, project / "c", seed=4)
    assert (project / "c" / "samples.png").read_bytes() != (project / "a" / "samples.png").read_bytes()
    assert other[0].read_bytes() == first[0].read_bytes()  # reconstructions draw nothing


def test_samples_stage_refuses_a_model_that_does_not_generate(project) -> None:
    data = tiny_dataset(project / "data")
    cfg = load_config(write_params(project, method="simclr", **{**TINY_RUN, "epochs": 1}))
    pretrain(cfg, data, project / "out", project / "ck", track=False)
    result = subprocess.run([sys.executable, str(REPO / "stages/samples.py"), "--params", str(project / "params.yaml"),
                             "--data", str(data), "--model", str(project / "out/model.pt"),
                             "--run", str(project / "out/run.json"), "--out", str(project / "samples")],
                            cwd=project, capture_output=True, text=True)
    assert result.returncode == 1
    assert "'simclr', which does not generate images" in result.stderr
    assert not (project / "samples").exists()
