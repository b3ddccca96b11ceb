"""Numpy rasteriser: textured, panning backgrounds and anti-aliased shaded shapes.

Shapes are signed distance fields evaluated only inside each object's bounding box, so a
frame costs a background resample plus a few small patches. Objects are shaded with a
gradient along their own x axis and a dark rim: rotation is visible even for a disc, and
objects stand out from a busy background without being trivially segmentable by colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (all in [0, 1]) as float32 RGB in [0, 1]."""
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, dtype=np.float32)


def _box(u: np.ndarray, v: np.ndarray, hx: float, hy: float) -> np.ndarray:
    qx, qy = np.abs(u) - hx, np.abs(v) - hy
    outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
    return outside + np.minimum(np.maximum(qx, qy), 0.0)


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Equilateral triangle of circumradius 1 pointing up (image y grows downwards).
    k = np.sqrt(3.0)
    r = k / 2.0
    px = np.abs(u) - r
    py = -v + r / k
    fold = px + k * py > 0
    px, py = np.where(fold, (px - k * py) / 2, px), np.where(fold, (-k * px - py) / 2, py)
    px = px - np.clip(px, -2 * r, 0.0)
    return -np.hypot(px, py) * np.sign(py)


def shape_sdf(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) to a unit-sized shape at local coordinates (u, v)."""
    if shape == "disc":
        return np.hypot(u, v) - 1.0
    if shape == "square":
        return _box(u, v, 0.8, 0.8)
    if shape == "triangle":
        return _triangle(u, v)
    if shape == "cross":
        return np.minimum(_box(u, v, 1.0, 0.32), _box(u, v, 0.32, 1.0))
    if shape == "ring":
        return np.abs(np.hypot(u, v) - 0.7) - 0.3
    if shape == "star":  # five points, one up; a radial bound, close to a distance near the rim
        lobe = (0.5 + 0.5 * np.cos(5.0 * (np.arctan2(v, u) + np.pi / 2))) ** 2
        return 0.7 * (np.hypot(u, v) - (0.5 + 0.5 * lobe))
    if shape == "crescent":  # a disc with an offset disc cut out, opening to the right
        return np.maximum(np.hypot(u, v) - 1.0, 0.8 - np.hypot(u - 0.45, v))
    raise ValueError(f"unknown shape {shape!r}")


@dataclass
class Sprite:
    """One object on screen in frames ``[f0, f1)`` with its per-frame pose (arrays)."""

    shape: str
    color: np.ndarray
    radius: float
    f0: int
    f1: int
    x: np.ndarray
    y: np.ndarray
    angle: np.ndarray
    sx: np.ndarray
    sy: np.ndarray
    bright: np.ndarray
    alpha: np.ndarray
    layer: int = 0
    """Drawing order: 0 below the actors, 1 actors, 2 above the actors."""


def draw_sprite(canvas: np.ndarray, sp: Sprite, frame: int) -> None:
    """Composite sprite ``sp`` as it is at ``frame`` onto ``canvas`` (float32 HxWx3, in place)."""
    i = frame - sp.f0
    alpha = float(sp.alpha[i])
    if alpha <= 0.0:
        return
    cx, cy, sx, sy = float(sp.x[i]), float(sp.y[i]), float(sp.sx[i]), float(sp.sy[i])
    r = sp.radius
    ext = r * max(sx, sy) * 1.3 + 2.0
    h, w = canvas.shape[:2]
    x0, x1 = max(0, int(cx - ext)), min(w, int(cx + ext) + 2)
    y0, y1 = max(0, int(cy - ext)), min(h, int(cy + ext) + 2)
    if x0 >= x1 or y0 >= y1:
        return
    xs = (np.arange(x0, x1, dtype=np.float32) - cx)[None, :]
    ys = (np.arange(y0, y1, dtype=np.float32) - cy)[:, None]
    c, s = np.cos(sp.angle[i]), np.sin(sp.angle[i])
    u = (c * xs + s * ys) / (r * sx)
    v = (-s * xs + c * ys) / (r * sy)
    d = shape_sdf(sp.shape, u, v) * (r * min(sx, sy))
    cover = np.clip(0.5 - d, 0.0, 1.0) * alpha
    shade = (0.55 + 0.5 * np.clip(0.5 + 0.5 * u, 0.0, 1.0)) * (1.0 - 0.45 * np.clip(d + 1.8, 0, 1))
    shade = shade * float(sp.bright[i])
    patch = canvas[y0:y1, x0:x1]
    patch += cover[..., None] * (sp.color[None, None, :] * shade[..., None] - patch)


def _smooth_noise(rng: np.random.Generator, n: int, cells: int) -> np.ndarray:
    """``n x n x 3`` colour noise: a random ``cells``-grid smoothly interpolated."""
    grid = rng.random((cells + 1, cells + 1, 3), dtype=np.float32)
    pos = np.linspace(0.0, cells, n, endpoint=False, dtype=np.float32)
    i = np.minimum(pos.astype(np.int64), cells - 1)
    f = pos - i
    f = f * f * (3 - 2 * f)  # smoothstep: no visible grid lines
    rows = grid[i] * (1 - f)[:, None, None] + grid[i + 1] * f[:, None, None]
    return rows[:, i] * (1 - f)[None, :, None] + rows[:, i + 1] * f[None, :, None]


def make_texture(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """A random ``n x n`` background texture: tinted base, colour blotches and gratings."""
    base = hsv_to_rgb(rng.random(), rng.uniform(0.15, 0.45), rng.uniform(0.35, 0.6))
    tex = base[None, None, :] + rng.uniform(0.15, 0.3) * (
        _smooth_noise(rng, n, int(rng.integers(3, 7))) - 0.5
    )
    tex += 0.08 * (_smooth_noise(rng, n, int(rng.integers(8, 16))) - 0.5)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    for _ in range(int(rng.integers(2, 4))):
        theta = rng.uniform(0, np.pi)
        wavelength = rng.uniform(size / 14, size / 4)
        phase = (np.cos(theta) * xx + np.sin(theta) * yy) * (2 * np.pi / wavelength)
        tint = hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.6), 1.0)
        tex += rng.uniform(0.03, 0.08) * np.sin(phase + rng.uniform(0, 2 * np.pi))[..., None] * tint
    return np.clip(tex, 0.03, 0.97).astype(np.float32)


@dataclass
class Background:
    """A texture larger than the frame, a slow pan over it and a global brightness drift.

    With ``zoom`` (a camera, preset ``camera``), pixel ``(i, j)`` of frame ``f`` shows the
    texture at ``(pan_y[f] + i / zoom[f], pan_x[f] + j / zoom[f])``.
    """

    texture: np.ndarray
    pan_x: np.ndarray
    pan_y: np.ndarray
    gain: np.ndarray
    noise_sigma: float
    zoom: np.ndarray | None = None

    def frame(self, f: int, size: int) -> np.ndarray:
        """The background of frame ``f`` (bilinear sub-pixel pan), float32 ``size x size x 3``."""
        if self.zoom is not None:
            return self._zoomed(f, size)
        ox, oy = float(self.pan_x[f]), float(self.pan_y[f])
        ix, iy = int(ox), int(oy)
        fx, fy = ox - ix, oy - iy
        t = self.texture
        top = (
            t[iy : iy + size, ix : ix + size] * (1 - fx)
            + t[iy : iy + size, ix + 1 : ix + 1 + size] * fx
        )
        bot = (
            t[iy + 1 : iy + 1 + size, ix : ix + size] * (1 - fx)
            + t[iy + 1 : iy + 1 + size, ix + 1 : ix + 1 + size] * fx
        )
        return top * (1 - fy) + bot * fy

    def _zoomed(self, f: int, size: int) -> np.ndarray:
        assert self.zoom is not None
        step = np.arange(size, dtype=np.float64) / float(self.zoom[f])
        xs, ys = float(self.pan_x[f]) + step, float(self.pan_y[f]) + step
        ix, iy = np.floor(xs).astype(np.int64), np.floor(ys).astype(np.int64)
        fx = (xs - ix).astype(np.float32)[None, :, None]
        fy = (ys - iy).astype(np.float32)[:, None, None]
        rows, rows1 = self.texture[iy], self.texture[iy + 1]
        top = rows[:, ix] * (1 - fx) + rows[:, ix + 1] * fx
        bot = rows1[:, ix] * (1 - fx) + rows1[:, ix + 1] * fx
        return top * (1 - fy) + bot * fy


@dataclass
class Camera:
    """A view that pans and zooms over a scene laid out in world pixels (preset ``camera``).

    Frame ``f`` shows the world window from ``(x0[f], y0[f])``, ``size / zoom[f]`` wide:
    world point ``(x, y)`` is drawn at ``((x - x0[f]) * zoom[f], (y - y0[f]) * zoom[f])``.
    """

    x0: np.ndarray
    y0: np.ndarray
    zoom: np.ndarray

    def apply(self, sp: Sprite) -> None:
        """Turn sprite ``sp`` from world into screen coordinates (in place)."""
        z = self.zoom[sp.f0 : sp.f1]
        sp.x = (sp.x - self.x0[sp.f0 : sp.f1]) * z
        sp.y = (sp.y - self.y0[sp.f0 : sp.f1]) * z
        sp.sx = sp.sx * z
        sp.sy = sp.sy * z


def render_frames(
    background: Background, sprites: list[Sprite], frames: int, size: int, noise_seed: list[int]
):
    """Yield the ``frames`` uint8 RGB frames of a video, one at a time."""
    rng = np.random.default_rng(noise_seed)
    order = sorted(range(len(sprites)), key=lambda k: (sprites[k].layer, k))
    ordered = [sprites[k] for k in order]
    for f in range(frames):
        canvas = background.frame(f, size)
        for sp in ordered:
            if sp.f0 <= f < sp.f1:
                draw_sprite(canvas, sp, f)
        canvas *= background.gain[f]
        canvas += rng.standard_normal((size, size, 1), dtype=np.float32) * background.noise_sigma
        yield (np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
