"""Stage `samples`: a generative method's image grids (reconstructions, prior samples, latent traversals),
written to --out and logged to the pretraining's MLflow run under `samples/`. It reads the run's resolved
`evaluate` params (the seed of the samples drawn)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfsup.augment.views import EvalTransform
from selfsup.cli import run_stage, stage_parser
from selfsup.config import Config
from selfsup.data.store import load_meta, load_split
from selfsup.errors import ConfigError
from selfsup.eval.evaluate import load_method
from selfsup.eval.samples import write_samples
from selfsup.tracking import log_artifacts


def main(args: argparse.Namespace, cfg: Config) -> None:
    method, view_size, saved = load_method(args.model)
    if not method.generative:
        raise ConfigError(f"samples: the model at {args.model} is {saved.method!r}, which does not generate images; "
                          f"run it for vae, betavae or vqvae")
    meta = load_meta(args.data)
    written = write_samples(method, load_split(args.data, "test").images,
                            EvalTransform(view_size, meta["mean"], meta["std"]), args.out, cfg.seed)
    log_artifacts(args.run, written, "samples")
    print("samples: " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    parser.add_argument("--model", type=Path, required=True, help="model.pt written by pretrain")
    parser.add_argument("--run", type=Path, required=True, help="run.json written by pretrain")
    parser.add_argument("--out", type=Path, required=True, help="output folder of the PNG grids")
    sys.exit(run_stage(main, parser, "evaluate"))
