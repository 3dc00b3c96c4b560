"""gw-jax generate offline: a tiny release-layout folder (``gw_jax.testing.release_folder``: random DiT, Wan VAE,
T5 + tokenizer and LoRA in the release's formats); one device == 8 devices (data 2 x context 4); the reference
sampler step for step; the release's image resize and crop; bad inputs -> one line, exit 2."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from gw_jax.diffusion import sample_reference
from gw_jax.diffusion.generate import (GenerationPipeline, Request, generate, release_size, requests_from_json,
                                       resize_and_crop)
from gw_jax.errors import UserInputError
from gw_jax.parallel.mesh import make_mesh
from gw_jax.testing import release_folder

FIXTURES = Path(__file__).parent / "fixtures"
SIZE = dict(num_frames=5, height=32, width=48, steps=3)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return release_folder(tmp_path_factory.mktemp("release") / "release")


def test_release_resize_and_crop():
    assert release_size((640, 480), (640, 480)) == (640, 480)
    assert release_size((1280, 720), (640, 480)) == (736, 416)  # area kept at 16:9, multiples of 16
    assert release_size((480, 640), (768, 480)) == (528, 704)
    image = np.arange(90 * 120 * 3, dtype=np.uint8).reshape(90, 120, 3)
    assert resize_and_crop(image, 48, 32).shape == (32, 48, 3)
    # a 1:1 image into 48x32 is resized to 48x48 and the centre 32 rows kept
    square = np.zeros((50, 50, 3), np.uint8)
    square[:, :, 0] = np.arange(50)[:, None] * 5
    crop = resize_and_crop(square, 48, 32)
    full = np.asarray(Image.fromarray(square).resize((48, 48), Image.BILINEAR))
    np.testing.assert_array_equal(crop, full[8:40])


def test_one_device_equals_eight_devices(release):
    pipe = GenerationPipeline.from_release(release)
    requests = requests_from_json(release / "it2v.json")
    kw = dict(num_frames=5, height=32, width=48, steps=3, progress=False)
    one = generate(pipe, requests, mesh=make_mesh(dict(data=1), devices=jax.devices()[:1]), **kw)
    ring = GenerationPipeline.from_release(release, attention_impl="context_ring")
    eight = generate(ring, requests, mesh=make_mesh(dict(data=2, context=4)), **kw)
    # 4:3 images fill 48x32; the square one keeps the area at 1:1, rounded to multiples of 16: 32x32
    assert [r.video.shape for r in one] == [(3, 5, 32, 48)] * 2 + [(3, 5, 32, 32)]
    for a, b in zip(one, eight, strict=True):
        scale = np.abs(a.latents).max()
        assert np.abs(a.latents - b.latents).max() <= 1e-5 * scale
        assert np.abs(a.video - b.video).max() <= 1e-5
    # the same item alone gives the same video: noise is per item, not per batch
    alone = generate(pipe, requests[1:2], mesh=make_mesh(dict(data=1), devices=jax.devices()[:1]), **kw)
    np.testing.assert_allclose(alone[0].latents, one[1].latents, rtol=0, atol=1e-5 * np.abs(one[1].latents).max())


def test_steps_are_the_reference_sampler(release):
    """The step-at-a-time loop == sample_reference (tested against the release's pipeline) on the same inputs."""
    pipe = GenerationPipeline.from_release(release)
    request = Request(prompt="w1 w2", image=None, source="-")
    result = generate(pipe, [request], guidance=3.0, seed=5, progress=False, **{
        k: v for k, v in dict(SIZE, num_frames=1).items()})[0]
    context = jnp.asarray(pipe.text.encode(["w1 w2"])[0])
    negative = jnp.asarray(pipe.text.encode([generate.__kwdefaults__["negative_prompt"]])[0])
    noise = jax.random.normal(jax.random.key(5), (16, 1, 4, 6)) * 80.0
    expected, _ = sample_reference(pipe.model, noise[None], context=context, negative_context=negative, steps=3,
                                   guidance=3.0, fps=16.0)
    np.testing.assert_allclose(result.latents, np.asarray(expected)[0], rtol=1e-5, atol=1e-5)


def gw_jax(*args):
    return subprocess.run([sys.executable, "-m", "gw_jax.cli", *map(str, args)], capture_output=True, text=True)


def test_cli_writes_videos_and_settings(release, tmp_path):
    out = tmp_path / "out"
    result = gw_jax("generate", "--release", release, "--json", release / "it2v.json", "--out", out, "--frames", 5,
                    "--height", 32, "--width", 48, "--steps", 2, "--no-progress", "--lora",
                    f"{FIXTURES / 'gigaworld0_dit_tiny_lora_lora'}:0.5")
    assert result.returncode == 2 and "LoRA keys match no module" in result.stderr  # another model's adapter
    result = gw_jax("generate", "--release", release, "--json", release / "it2v.json", "--out", out, "--frames", 5,
                    "--height", 32, "--width", 48, "--steps", 2, "--no-progress", "--mesh", "data=2,context=4")
    assert result.returncode == 0, result.stderr[-2000:]
    settings = json.loads((out / "settings.json").read_text())
    assert settings["steps"] == 2 and settings["mesh"].startswith("data=2") and len(settings["items"]) == 3
    from gw_jax.data.video import read_video

    frames, _ = read_video(out / "0.mp4")
    assert frames.shape == (5, 32, 48, 3)


@pytest.mark.parametrize("damage,message", [
    ("folder", "not a checkpoint folder"),
    ("field", "item 0 has no 'prompt'"),
    ("image", "unreadable image"),
])
def test_bad_inputs_are_one_line_exit_2(release, tmp_path, damage, message):
    data = release / "it2v.json"
    args = ["--release", release]
    if damage == "folder":
        args = ["--transformer", tmp_path, "--vae", release / "vae"]
    elif damage == "field":
        data = tmp_path / "bad.json"
        data.write_text(json.dumps([{"image": str(release / "0.png")}]))
    else:
        (tmp_path / "broken.png").write_bytes(b"not a png")
        data = tmp_path / "bad.json"
        data.write_text(json.dumps([{"image": "broken.png", "prompt": "w1"}]))
    result = gw_jax("generate", *args, "--json", data, "--out", tmp_path / "o", "--steps", 1)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_json_errors_in_process(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(UserInputError, match="non-empty JSON list"):
        requests_from_json(tmp_path / "x.json")
