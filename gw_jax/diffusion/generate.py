"""Image-to-video generation with released weights: the release's ``scripts/inference.py`` in JAX.

    pipe = GenerationPipeline.from_release("GigaWorld-0-Video-GR1-2b", lora={"mine": ("lora_dir", 0.8)})
    requests = requests_from_json("assets/it2v.json")          # [{"image": ..., "prompt": ...}, ...]
    videos = generate(pipe, requests, preset="gr1", mesh=make_mesh(dict(data=2, context=4)))
    videos[0].video                                              # float32 (3, T, H, W) in [-1, 1]

What the release does per item, step for step: the input image is resized and centre-cropped to the
output size (``release_size``: the target area at the image's aspect ratio, sides rounded to multiples of
16), becomes frame 0 of an otherwise black clip that the VAE encodes (one reference latent), the prompt and the
negative prompt go through T5, and the reference sampler (EDM RES order 1, Karras sigmas, CFG ``c + g(c - u)``,
30 steps, sigma_max 80) denoises from N(0, 1) * sigma_max; the VAE decodes. Every item starts from the same
seed (the release calls ``set_seed(seed)`` per item), so a video does not depend on its batch.

On a mesh, items are data-parallel (a batch per ``data`` x ``fsdp`` devices) and every clip's tokens are
context-parallel over ``context`` (ring attention); the denoising steps run one jitted step at a time, with a
progress bar.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from PIL import Image
from tqdm.auto import tqdm

from gw_jax.data.loader import PackedRecords
from gw_jax.data.records import decode_example
from gw_jax.data.video import decode_video_bytes
from gw_jax.diffusion.samplers import karras_sigmas, make_x0_fn, reference_step
from gw_jax.errors import UserInputError, load_json
from gw_jax.models.dit import GigaWorld0DiT
from gw_jax.models.text import TextEncoder, load_text_encoder
from gw_jax.models.vae import WanLatentCodec, WanVAE
from gw_jax.parallel.logical import DEFAULT_RULES, use_mesh_rules
from gw_jax.parallel.mesh import batch_sharding, make_mesh

PRESETS = {"pretrain": dict(num_frames=61, height=480, width=640),  # GigaWorld-0-Video-Pretrain-2b
           "gr1": dict(num_frames=93, height=480, width=768)}  # GigaWorld-0-Video-GR1-2b
DEFAULT_SEED, DEFAULT_FPS = 6666, 16.0
# scripts/inference.py's negative prompt, byte for byte (its line continuations leave 21 spaces between parts)
NEGATIVE_PROMPT = (" " * 21).join([
    "The video captures a series of frames showing ugly scenes, static with no motion, motion blur,",
    "over-saturation, shaky footage, low resolution, grainy texture, pixelated images, poorly lit areas,",
    "underexposed and overexposed scenes, poor color balance, washed out colors, choppy sequences,",
    "jerky movements, low frame rate, artifacting, color banding, unnatural transitions, outdated special",
    "effects, fake elements, unconvincing visuals, poorly edited content, jump cuts, visual noise, and",
    "flickering. Overall, the video is of poor quality."])


@dataclasses.dataclass
class Request:
    prompt: str
    image: np.ndarray | None  # uint8 (H, W, 3) as read, before resizing
    source: str  # where it came from (file or record), for the settings JSON
    text_emb: np.ndarray | None = None  # (L, C) precomputed (packed data), zeros past the prompt


@dataclasses.dataclass
class Generated:
    request: Request
    video: np.ndarray  # float32 (3, T, H, W) in [-1, 1]
    latents: np.ndarray  # (C, t, h, w), normalised
    height: int
    width: int


# ---------------------------------------------------------------------------------------------- inputs
def read_image(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: image not found")
    return decode_image(path.read_bytes(), where=str(path))


def decode_image(data: bytes, *, where: str = "image") -> np.ndarray:
    """An image file's bytes (png, jpg, ...) -> uint8 (H, W, 3) RGB; ``where`` names it in errors."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except Exception as e:  # PIL raises several types for unreadable files
        raise UserInputError(f"{where}: unreadable image ({type(e).__name__}: {e})") from e


def requests_from_json(path: str | Path) -> list[Request]:
    """An ``it2v.json``-style list of {"image": path, "prompt": text}; relative images are looked up next to
    the JSON file when not found as given (as the release does)."""
    path = Path(path)
    items = load_json(path, what='a JSON list of {"image": ..., "prompt": ...}')
    if not isinstance(items, list) or not items:
        raise UserInputError(f"{path}: expected a non-empty JSON list of {{\"image\", \"prompt\"}} objects")
    requests = []
    for i, item in enumerate(items):
        for field in ("image", "prompt"):
            if not isinstance(item, dict) or not isinstance(item.get(field), str):
                raise UserInputError(f"{path}: item {i} has no {field!r} (a string)")
        image = Path(item["image"])
        if not image.exists():
            image = path.parent / image
        requests.append(Request(prompt=item["prompt"], image=read_image(image), source=str(image)))
    return requests


def requests_from_packed(packed_dir: str | Path, limit: int | None = None) -> list[Request]:
    """Records of a ``gw-jax pack`` output: first frame, prompt and its packed text embedding."""
    records = PackedRecords(packed_dir)
    width, max_length = records.index["text_encoder"]["width"], records.index["text_encoder"]["max_length"]
    requests = []
    for i in range(len(records) if limit is None else min(limit, len(records))):
        features = decode_example(records[i])
        name = features["name"][0].decode("utf-8")
        frames, _ = decode_video_bytes(features["video"][0], where=f"{packed_dir} record {name}")
        length = int(features["text_len"][0])
        emb = np.zeros((max_length, width), np.float32)
        emb[:length] = np.frombuffer(features["text_emb"][0], np.float16).reshape(length, width)
        requests.append(Request(prompt=features["prompt"][0].decode("utf-8"), image=frames[0],
                                source=f"{packed_dir}#{name}", text_emb=emb))
    return requests


def release_size(image_wh: tuple[int, int], target_wh: tuple[int, int], multiple: int = 16) -> tuple[int, int]:
    """The output (width, height): the target's area at the image's aspect ratio, sides rounded to a multiple
    (giga_datasets ``get_image_size(mode='area', multiple=16)``)."""
    (w, h), (tw, th) = image_wh, target_wh
    aspect = h / w
    height, width = round(float(np.sqrt(tw * th * aspect))), round(float(np.sqrt(tw * th / aspect)))
    return round(width / multiple) * multiple, round(height / multiple) * multiple


def resize_and_crop(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize so the image covers (width, height), then the centre crop (the release's)."""
    h, w = image.shape[:2]
    if height / h < width / w:
        new_w, new_h = width, int(round(width / w * h))
    else:
        new_w, new_h = int(round(height / h * w)), height
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return resized[top:top + height, left:left + width]


# ---------------------------------------------------------------------------------------------- models
def release_component(root: str | Path, name: str) -> Path:
    """``root/name`` of a release folder (transformer, vae, text_encoder), or None when absent."""
    path = Path(root) / name
    return path if (path / "config.json").is_file() else None


@dataclasses.dataclass
class GenerationPipeline:
    model: GigaWorld0DiT
    codec: WanLatentCodec
    text: TextEncoder | None

    @classmethod
    def from_release(cls, root: str | Path | None = None, *, transformer=None, vae=None, text_encoder=None,
                     lora=None, lora_fuse: bool = False, dtype="float32",
                     attention_impl: str = "xla", load_text: bool = True) -> "GenerationPipeline":
        """The release's folders (``root``/transformer, vae, text_encoder, or each given); ``lora``: what
        ``load_lora`` takes ({name: path or (path, scale)}); ``load_text=False``: no text encoder (prompt
        embeddings come with the requests and ``generate(negative_emb=...)``, e.g. from :func:`embed_prompts`)."""
        parts = {}
        for name, given in (("transformer", transformer), ("vae", vae), ("text_encoder", text_encoder)):
            if name == "text_encoder" and not load_text:
                parts[name] = None
                continue
            parts[name] = Path(given) if given else (release_component(root, name) if root else None)
            if parts[name] is not None and not (parts[name] / "config.json").is_file():
                raise UserInputError(f"--{name.replace('_', '-')} {parts[name]}: not a checkpoint folder "
                                     "(no config.json)")
        for name in ("transformer", "vae"):
            if parts[name] is None:
                raise UserInputError(f"no {name} folder: give --{name} or a release folder with {name}/")
        model = GigaWorld0DiT.from_pretrained(parts["transformer"], dtype=dtype, attention_impl=attention_impl)
        if lora:
            model.load_lora(lora, fuse=lora_fuse)
        codec = WanLatentCodec(WanVAE.from_pretrained(parts["vae"]))
        text = load_text_encoder(parts["text_encoder"]) if parts["text_encoder"] is not None else None
        return cls(model, codec, text)


# ---------------------------------------------------------------------------------------------- sampling
def _fit(emb: np.ndarray, length: int) -> np.ndarray:
    """Pad with zero rows (padded tokens) or cut to ``length`` tokens."""
    out = np.zeros((length,) + emb.shape[1:], np.float32)
    out[: min(length, len(emb))] = emb[:length]
    return out


def denoiser_step(graphdef, mesh, rules, guidance: float, augment_sigma: float):
    """One jitted step of the release's sampler for a batch (the body of ``sample_reference``'s scan)."""

    def step(state, sample, cond_latents, cond_mask, context, negative, fps, sigma_s, sigma_t):
        with use_mesh_rules(mesh, rules):
            model = nnx.merge(graphdef, state)
            x0_fn, params = make_x0_fn(model, context=context, negative_context=negative, cond_latents=cond_latents,
                                       cond_mask=cond_mask, fps=fps, guidance=guidance, augment_sigma=augment_sigma)
            return reference_step(x0_fn, params, sample, sigma_s, sigma_t)

    return jax.jit(step)


def generate(pipe: GenerationPipeline, requests: Sequence[Request], *, num_frames: int | None = None,
             height: int | None = None, width: int | None = None, preset: str = "pretrain",
             fps: float = DEFAULT_FPS, steps: int = 30, guidance: float = 7.0, seed: int = DEFAULT_SEED,
             negative_prompt: str = NEGATIVE_PROMPT, sigma_max: float = 80.0, augment_sigma: float = 0.001,
             mesh: Mesh | None = None, rules=DEFAULT_RULES, progress: bool = True,
             negative_emb: np.ndarray | None = None) -> list[Generated]:
    """Videos for ``requests``; ``num_frames``/``height``/``width`` default to the preset's. ``negative_emb``:
    the negative prompt's embedding (L, C), precomputed (else the pipeline's text encoder embeds it)."""
    if preset not in PRESETS:
        raise UserInputError(f"--preset {preset!r}: choose from {sorted(PRESETS)}")
    size = {**PRESETS[preset], **{k: v for k, v in dict(num_frames=num_frames, height=height, width=width).items()
                                  if v is not None}}
    if (size["num_frames"] - 1) % pipe.codec.temporal_factor:
        raise UserInputError(f"--frames {size['num_frames']}: must be 1 + {pipe.codec.temporal_factor}k")
    if guidance > 1.0 and negative_emb is None:
        if pipe.text is None:
            raise UserInputError("guidance > 1 embeds the negative prompt: give --text-encoder (or --guidance 1)")
        negative_emb = pipe.text.encode([negative_prompt])[0][0]
    if guidance <= 1.0:
        negative_emb = None  # no unconditional pass
    length = pipe.text.max_length if pipe.text is not None else max(
        (len(r.text_emb) for r in requests if r.text_emb is not None), default=0)
    width_c = pipe.model.config["crossattn_emb_channels"]
    mesh = mesh if mesh is not None else make_mesh(dict(data=1), devices=jax.devices()[:1])
    per_batch = int(np.prod([mesh.shape.get(a, 1) for a in ("data", "fsdp")]))
    replicated = NamedSharding(mesh, PartitionSpec())
    graphdef, state = nnx.split(pipe.model)
    state = jax.device_put(state, replicated)
    step = denoiser_step(graphdef, mesh, rules, guidance, augment_sigma)

    # items of one output size go together, per_batch at a time (the last batch padded with repeats)
    sizes = [release_size((r.image.shape[1], r.image.shape[0]), (size["width"], size["height"])) if r.image is not None
             else (size["width"], size["height"]) for r in requests]
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, wh in enumerate(sizes):
        by_size.setdefault(wh, []).append(i)
    batches = [items[k:k + per_batch] for items in by_size.values() for k in range(0, len(items), per_batch)]
    results: list[Generated | None] = [None] * len(requests)
    for batch in tqdm(batches, desc="videos", disable=not progress or len(batches) < 2):
        w, h = sizes[batch[0]]
        padded = batch + [batch[-1]] * (per_batch - len(batch))
        clips, contexts = [], []
        for i in padded:
            request = requests[i]
            clip = np.zeros((3, size["num_frames"], h, w), np.float32)
            if request.image is not None:
                clip[:, 0] = np.moveaxis(resize_and_crop(request.image, w, h).astype(np.float32) / 127.5 - 1, -1, 0)
            clips.append(clip)
            emb = request.text_emb if request.text_emb is not None else _encode_prompt(pipe, request.prompt)
            if emb.shape[-1] != width_c:
                raise UserInputError(f"{request.source}: text embeddings of width {emb.shape[-1]}, the transformer "
                                     f"expects {width_c} (give --text-encoder to embed the prompts)")
            contexts.append(_fit(emb, length))
        cond = jnp.concatenate([pipe.codec.encode(jnp.asarray(c[None])) for c in clips])
        has_image = [requests[i].image is not None for i in padded]
        mask = jnp.asarray(np.asarray(has_image, np.float32)).reshape(-1, 1, 1, 1, 1) * (
            jnp.arange(cond.shape[2]) == 0).reshape(1, 1, -1, 1, 1)
        noise = jax.random.normal(jax.random.key(seed), cond.shape[1:], jnp.float32) * sigma_max
        put = lambda x: jax.device_put(x, batch_sharding(mesh, x.ndim))  # noqa: E731
        sample = put(jnp.broadcast_to(noise, cond.shape))
        args = [put(cond), put(mask.astype(jnp.float32)), put(jnp.asarray(np.stack(contexts))),
                jax.device_put(jnp.asarray(_fit(negative_emb, length)[None]) if negative_emb is not None
                               else jnp.zeros((1, length, width_c)), replicated), jnp.float32(fps)]
        sigmas = karras_sigmas(steps, sigma_max=sigma_max)
        for k in tqdm(range(steps), desc=f"denoise {len(batch)} x {size['num_frames']}x{h}x{w}", leave=False,
                      disable=not progress):
            sample = step(state, sample, *args, sigmas[k], sigmas[k + 1])
        latents = np.asarray(jax.device_get(mask * cond + (1 - mask) * sample))
        for j, i in enumerate(batch):
            video = np.asarray(pipe.codec.decode(jnp.asarray(latents[j:j + 1])))[0]
            results[i] = Generated(request=requests[i], video=video, latents=latents[j], height=h, width=w)
    return results


def embed_prompts(text_encoder, prompts: Sequence[str], cache: str | Path, *, dtype="bfloat16",
                  max_length: int | None = None) -> dict[str, np.ndarray]:
    """{prompt: embedding (L, C) float32}, computed once and kept in the ``cache`` .npz. ``text_encoder``: a T5
    folder, or a function returning one (called, e.g. to download it, only when a prompt is not cached yet).
    The encoder is loaded only then and dropped on return: the release's T5-11B encoder holds 4.8 B parameters
    (9.6 GB in bfloat16), more than the 2B DiT, so embed first, then load the transformer."""
    cache = Path(cache)
    cached: dict[str, np.ndarray] = {}
    if cache.is_file():
        with np.load(cache) as npz:
            cached = dict(zip(npz["prompts"].tolist(), npz["emb"], strict=True))
    missing = [p for p in dict.fromkeys(prompts) if p not in cached]
    if missing:
        folder = text_encoder() if callable(text_encoder) else text_encoder
        encoder = load_text_encoder(folder, max_length=max_length, dtype=dtype)
        emb, _ = encoder.encode(missing)
        cached.update(zip(missing, emb, strict=True))
        del encoder
        cache.parent.mkdir(parents=True, exist_ok=True)
        names = list(cached)
        np.savez(cache, prompts=np.asarray(names), emb=np.stack([cached[p] for p in names]))
    return {p: cached[p] for p in prompts}


def _encode_prompt(pipe: GenerationPipeline, prompt: str) -> np.ndarray:
    if pipe.text is None:
        raise UserInputError("prompts need a text encoder: give --text-encoder (a T5 folder) or packed data")
    return pipe.text.encode([prompt])[0][0]


def settings_json(results: Sequence[Generated], files: Sequence[str], **settings) -> str:
    items = [dict(prompt=r.request.prompt, source=r.request.source, height=r.height, width=r.width, file=f)
             for r, f in zip(results, files, strict=True)]
    return json.dumps({**settings, "items": items}, indent=1, default=str)
