"""Train the demo's tiny segmentation model and write tasks/demo/checkpoint.ckpt.

    WANDB_MODE=disabled .venv/bin/python tasks/demo/train_model.py [--epochs N]

It trains on a synthetic scene of its own (another seed and place than the demo's), as
an rslearn user would: an rslearn dataset whose `image` layer comes from the GeoTIFFs
through LocalFiles (prepare / ingest / materialize, the pipeline's own code) and whose
`label` layer is written into each window, then `rslearn model fit` in-process with
tasks/demo/model.yaml. The checkpoint keeps the weights only (a few tens of kB).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from rasterio.crs import CRS
from rslearn.dataset import Dataset, Window
from rslearn.lightning_cli import RslearnLightningCLI
from rslearn.utils.geometry import Projection
from rslearn.utils.raster_array import RasterArray
from upath import UPath

from rslp.pipeline import rslearn_ops
from rslp.pipeline.config import Hardware
from rslp.pipeline.configfile import substitute
from rslp.pipeline.demo import DEMO_DIR, TRAIN_SCENE, synthesize, write_scene

WINDOW = 64


def build_dataset(root: Path, scene_dir: Path) -> None:
    """An rslearn dataset over the training scene: 64 px windows, 1 in 5 held out for validation."""
    config = json.loads((DEMO_DIR / "dataset.json").read_text())
    # dataset.json reads ${CONFIG_DIR}/data/images: point it at the training scene.
    config = substitute(config, "dataset.json", {"CONFIG_DIR": str(scene_dir.parent)})
    config["layers"]["label"] = {"type": "raster", "band_sets": [{"dtype": "uint8", "bands": ["class"]}]}
    (root / "config.json").write_text(json.dumps(config))
    dataset = Dataset(UPath(root))
    projection = Projection(CRS.from_string(TRAIN_SCENE.crs), TRAIN_SCENE.resolution, -TRAIN_SCENE.resolution)
    label_format = dataset.layers["label"].band_sets[0].instantiate_raster_format()
    _, label = synthesize(TRAIN_SCENE)
    col0 = round(TRAIN_SCENE.origin[0] / TRAIN_SCENE.resolution)
    row0 = round(-TRAIN_SCENE.origin[1] / TRAIN_SCENE.resolution)
    height, width = TRAIN_SCENE.shape
    for r in range(height // WINDOW):
        for c in range(width // WINDOW):
            bounds = (col0 + c * WINDOW, row0 + r * WINDOW, col0 + (c + 1) * WINDOW, row0 + (r + 1) * WINDOW)
            split = "val" if (r * 3 + c) % 5 == 0 else "train"
            window = Window(
                storage=dataset.storage,
                group="train",
                name=f"r{r}_c{c}",
                projection=projection,
                bounds=bounds,
                time_range=None,
                options={"split": split},
            )
            window.save()
            window = dataset.load_windows(groups=["train"], names=[window.name])[0]
            patch = label[None, r * WINDOW : (r + 1) * WINDOW, c * WINDOW : (c + 1) * WINDOW]
            with window.data.open_layer_writer("label") as writer:
                writer.write_raster(["class"], label_format, projection, bounds, RasterArray(chw_array=patch))
            window.mark_layer_completed("label")
    hw = Hardware()
    rslearn_ops.prepare(UPath(root), "train", hw, "training scene", "train")
    rslearn_ops.ingest(UPath(root), "train", hw)
    rslearn_ops.materialize(UPath(root), "train", hw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", default=str(DEMO_DIR / "checkpoint.ckpt"))
    args = parser.parse_args()
    torch.manual_seed(0)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        scene_dir, ds_root = Path(tmp) / "data", Path(tmp) / "dataset"
        write_scene(TRAIN_SCENE, scene_dir)
        ds_root.mkdir()
        build_dataset(ds_root, scene_dir)
        cli = RslearnLightningCLI(
            model_class=LightningModule,
            datamodule_class=LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=[
                "fit",
                f"--config={DEMO_DIR / 'model.yaml'}",
                f"--data.init_args.path={ds_root}",
                f"--trainer.max_epochs={args.epochs}",
                f"--trainer.default_root_dir={tmp}",
                "--trainer.logger=false",
                "--trainer.enable_checkpointing=false",
                "--trainer.strategy=auto",
                "--trainer.accelerator=cpu",
                "--trainer.devices=1",
                "--trainer.enable_progress_bar=false",
            ],
            save_config_callback=None,
        )
        cli.trainer.save_checkpoint(args.out, weights_only=True)
        print(f"val metrics: {dict(cli.trainer.callback_metrics)}", file=sys.stderr)
    size = Path(args.out).stat().st_size
    print(f"wrote {args.out} ({size / 1024:.0f} kB) in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
