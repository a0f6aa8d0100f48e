"""The grain-boundary U-Net: shapes, saving, turning probabilities into grains, learning."""

from __future__ import annotations

import numpy as np
import torch

from sdl.analysis.microscopy.common import boundary_map
from sdl.analysis.microscopy.metrics import score_segmentation
from sdl.analysis.microscopy.unet import (
    UNet,
    boundary_probability,
    grains_from_boundary_probability,
    load_model,
    save_model,
    segment_grains_unet,
)
from sdl.training.unet import main as train_main
from sdl.training.unet import random_micrograph, train_unet


def test_network_keeps_the_image_shape_for_any_size():
    model = UNet(width=2, depth=3).eval()
    with torch.inference_mode():
        out = model(torch.zeros(2, 1, 37, 50))
    assert out.shape == (2, 1, 37, 50)


def test_perfect_boundary_probabilities_give_back_the_true_grains():
    micrograph = random_micrograph(np.random.default_rng(1), (128, 128))
    probability = boundary_map(micrograph.labels).astype(float)
    labels = grains_from_boundary_probability(probability)
    assert labels.min() == 1 and labels.shape == probability.shape
    assert score_segmentation(labels, micrograph.labels).grain_pixel_accuracy > 0.95


def test_a_few_seconds_of_training_already_finds_boundaries():
    model, _ = train_unet(
        steps=40, batch_size=4, images=16, crop_px=48, width=4, depth=2, learning_rate=1e-2
    )
    micrograph = random_micrograph(np.random.default_rng(123), (96, 96))
    probability = boundary_probability(model, micrograph.image)
    truth = boundary_map(micrograph.labels)
    assert probability[truth].mean() > probability[~truth].mean() + 0.1


def test_saved_model_gives_identical_output(tmp_path):
    torch.manual_seed(0)
    model = UNet(width=4, depth=2).eval()
    path = save_model(model, tmp_path / "unet.pt", {"steps": 0.0})
    again = load_model(path)
    image = random_micrograph(np.random.default_rng(5), (64, 64)).image
    np.testing.assert_array_equal(
        segment_grains_unet(model, image), segment_grains_unet(again, image)
    )
    stack = boundary_probability(again, np.stack([image, image]))
    np.testing.assert_allclose(stack[0], boundary_probability(model, image), atol=1e-6)


def test_training_command_writes_a_model(tmp_path, capsys):
    out = tmp_path / "cli.pt"
    train_main(
        ["--out", str(out), "--steps", "2", "--images", "2", "--batch-size", "2", "--width", "2"]
    )
    assert load_model(out).width == 2
    assert "wrote" in capsys.readouterr().out


def test_training_images_are_randomised_and_seeded():
    first = random_micrograph(np.random.default_rng(0))
    again = random_micrograph(np.random.default_rng(0))
    other = random_micrograph(np.random.default_rng(1))
    np.testing.assert_array_equal(first.image, again.image)
    assert not np.array_equal(first.image, other.image)
