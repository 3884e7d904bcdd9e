"""The one animation loop and its two writers (GIF, MP4).

The static parts of a figure (contour, colour bar, axes, legend) are drawn once
into a background; per frame the moving artists are updated by the figure's
`update(frame)` (set_data / set_offsets / set_text), the background is restored
and only the moving artists are drawn on it (blitting). Frames go straight to
the writer:

- GIF: one global palette, built once from the background plus the colours of
  the moving artists; every frame is mapped to it with a table lookup, and
  only the pixels that differ from the background are looked up. Pillow then
  stores each frame as the rectangle that changed.
- MP4: H.264 through imageio-ffmpeg, frames piped as raw RGB, with ffmpeg's
  bitexact flags so two renders give the same bytes.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from matplotlib.artist import Artist
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from tracer.errors import RenderError

# ~300 frames of a 500x400 four-path GIF are about 1 MB; a 1280-update run at
# 20 frames per second plays in 15 s.
DEFAULT_FRAMES = 300

_LUT_BITS = 5  # colour lookup table resolution per channel (32^3 cells)


def frame_indices(count: int, budget: int) -> np.ndarray:
    """Indices 0..count-1 subsampled evenly to at most `budget`, first and last kept."""
    if count <= 0:
        raise RenderError("nothing to animate: no update in range")
    if count <= budget:
        return np.arange(count)
    return np.unique(np.round(np.linspace(0, count - 1, budget)).astype(int))


class FrameText:
    """A one-line caption drawn into each frame from glyphs rendered once.

    Matplotlib lays out and rasterises a Text through FreeType on every draw,
    which costs more than all the moving lines of a frame together. A caption
    ("epoch 3  batch 5  update 29") only changes its characters, so it is set
    in a monospace font in an opaque box drawn with the background, and each
    frame copies pre-rendered glyph tiles into the box. In a still (no
    animation loop) it is an ordinary Text.
    """

    def __init__(self, ax: Any, x: float, y: float, width: int, fontsize: str = "small"):
        self.width = width
        self.artist = ax.text(x, y, " " * width, transform=ax.transAxes, va="top", ha="left",
                              family="monospace", fontsize=fontsize, zorder=9,
                              bbox=dict(boxstyle="square,pad=0.3", facecolor="white", edgecolor="#444444"))
        self.text = ""
        self._tiles: dict[str, np.ndarray] | None = None

    def set_text(self, text: str) -> None:
        self.text = text[: self.width]
        if self._tiles is None:
            self.artist.set_text(self.text.ljust(self.width))

    def prepare(self, figure: Figure) -> None:
        """Measure the box on the drawn background and render the glyph tiles."""
        renderer = figure.canvas.get_renderer()
        extent = self.artist.get_window_extent(renderer)
        height = int(figure.bbox.height)
        self._top = int(round(height - extent.y1))
        self._left = int(round(extent.x0))
        self._advance = extent.width / self.width
        self._tiles = _glyph_tiles(self.artist.get_fontproperties().copy(), figure.dpi, int(round(extent.height)),
                                   int(np.ceil(self._advance)) + 2)

    def draw_into(self, rgba: np.ndarray) -> None:
        for position, character in enumerate(self.text):
            tile = self._tiles.get(character)
            if tile is None or character == " ":
                continue
            column = self._left + int(round(position * self._advance))
            target = rgba[self._top:self._top + tile.shape[0], column:column + tile.shape[1]]
            # Dark glyphs rendered on white: the darker of the two is the glyph over the box.
            np.minimum(target, tile[: target.shape[0], : target.shape[1]], out=target)


@functools.lru_cache(maxsize=8)
def _glyph_tiles(font: Any, dpi: float, height: int, cell: int) -> dict[str, np.ndarray]:
    """RGBA tiles (glyph on white) of the printable ASCII characters, each `cell` wide."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    characters = [chr(c) for c in range(33, 127)]
    width = cell * len(characters)
    sheet = Figure(figsize=(width / dpi, (height + 4) / dpi), dpi=dpi, facecolor="white")
    FigureCanvasAgg(sheet)
    texts = [sheet.text(index * cell / width, 1.0, character, va="top", ha="left", fontproperties=font)
             for index, character in enumerate(characters)]
    sheet.canvas.draw()
    pixels = np.asarray(sheet.canvas.buffer_rgba())
    renderer = sheet.canvas.get_renderer()
    top = int(round(sheet.bbox.height - max(t.get_window_extent(renderer).y1 for t in texts)))
    return {character: pixels[top:top + height, index * cell:(index + 1) * cell].copy()
            for index, character in enumerate(characters)}


def render_frames(figure: Figure, animated: Sequence[Artist], update: Callable[[int], None],
                  frames: int, texts: Sequence[FrameText] = ()) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """(background RGBA, iterator of frame RGBA arrays) for frames 0..frames-1.

    The yielded array is the canvas' own buffer: use it before the next frame.
    """
    canvas = figure.canvas
    for artist in animated:
        artist.set_animated(True)  # left out of canvas.draw(): the background
    canvas.draw()
    saved = canvas.copy_from_bbox(figure.bbox)
    background = np.asarray(canvas.buffer_rgba()).copy()
    for text in texts:
        text.prepare(figure)

    def frames_iter() -> Iterator[np.ndarray]:
        for frame in range(frames):
            update(frame)
            canvas.restore_region(saved)
            for artist in animated:
                figure.draw_artist(artist)
            pixels = np.asarray(canvas.buffer_rgba())
            for text in texts:
                text.draw_into(pixels)
            yield pixels

    return background, frames_iter()


def _packed(rgba: np.ndarray) -> np.ndarray:
    """One uint32 per pixel: comparing whole pixels is one operation, not four."""
    return np.ascontiguousarray(rgba).view(np.uint32)[..., 0]


class GifPalette:
    """One palette for a whole animation and a fast RGBA -> index map.

    Entries: the background's colours (median cut), then the moving artists'
    colours exactly, then TRANSPARENT, the index of "unchanged since the
    previous frame" (so a frame stores only what moved, in long runs that
    LZW packs well).
    """

    TRANSPARENT = 255

    def __init__(self, background: np.ndarray, key_colors: Iterable[str]):
        from PIL import Image

        keys = []
        for color in key_colors:
            rgb = tuple(int(round(255 * c)) for c in to_rgb(color))
            if rgb not in keys:
                keys.append(rgb)
        keys = keys[:64]
        base_count = self.TRANSPARENT - len(keys)
        quantized = Image.fromarray(np.ascontiguousarray(background[..., :3])).quantize(
            colors=base_count, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        base = np.array(quantized.getpalette()[: 3 * base_count], dtype=np.uint8).reshape(-1, 3)
        base = np.vstack([base, np.zeros((base_count - len(base), 3), dtype=np.uint8)])
        self.colors = np.vstack([base, np.array(keys, dtype=np.uint8).reshape(-1, 3), [[0, 0, 0]]])
        self.background = _packed(background)
        self.background_index = np.asarray(quantized, dtype=np.uint8)
        self._lut = self._lookup_table(self.colors[: self.TRANSPARENT])

    @staticmethod
    def _lookup_table(colors: np.ndarray) -> np.ndarray:
        """Nearest palette entry of every cell of a 32^3 RGB grid."""
        levels = 1 << _LUT_BITS
        centres = ((np.arange(levels) << (8 - _LUT_BITS)) + (1 << (7 - _LUT_BITS))).astype(np.float32)
        r, g, b = np.meshgrid(centres, centres, centres, indexing="ij")
        cells = np.stack([r.ravel(), g.ravel(), b.ravel()], axis=1)
        palette = colors.astype(np.float32)
        # |cell - p|^2 = |cell|^2 - 2 cell.p + |p|^2; |cell|^2 does not change the argmin.
        distance = (palette * palette).sum(axis=1)[None, :] - 2.0 * cells @ palette.T
        return np.argmin(distance, axis=1).astype(np.uint8)

    def index(self, frame: np.ndarray) -> np.ndarray:
        """Palette indices of an RGBA frame of the background's shape."""
        packed = _packed(frame)
        changed = packed != self.background
        indices = self.background_index.copy()
        pixels = packed[changed]  # little-endian RGBA: red is the low byte
        shift = 8 - _LUT_BITS
        cells = (((pixels & 0xFF) >> shift) << (2 * _LUT_BITS)) | ((((pixels >> 8) & 0xFF) >> shift) << _LUT_BITS) \
            | (((pixels >> 16) & 0xFF) >> shift)
        indices[changed] = self._lut[cells]
        return indices


def write_gif(path: Path, background: np.ndarray, frames: Iterable[np.ndarray], fps: float,
              key_colors: Iterable[str]) -> int:
    """Write frames as an endlessly looping GIF with one global palette; returns the frame count."""
    from PIL import Image

    palette = GifPalette(background, key_colors)
    flat_palette = palette.colors.reshape(-1).tolist()
    images, previous = [], None
    for frame in frames:
        indices = palette.index(frame)
        stored = indices if previous is None else np.where(indices == previous, palette.TRANSPARENT, indices)
        previous = indices
        image = Image.fromarray(stored, mode="P")
        image.putpalette(flat_palette)
        images.append(image)
    if not images:
        raise RenderError("nothing to animate: no frame")
    # GIF delays are in hundredths of a second.
    duration = max(20, int(round(100.0 / fps)) * 10)
    # disposal 1 keeps each frame under the next: transparent pixels show the previous one.
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=duration,
                   loop=0, optimize=False, disposal=1, transparency=palette.TRANSPARENT)
    return len(images)


def write_mp4(path: Path, frames: Iterable[np.ndarray], fps: float, size: tuple[int, int]) -> int:
    """Write frames as H.264 MP4 (yuv420p); returns the frame count."""
    import imageio_ffmpeg

    width, height = size
    if width % 2 or height % 2:
        raise RenderError(f"MP4 frames need an even size, got {width}x{height}")
    writer = imageio_ffmpeg.write_frames(
        str(path), (width, height), fps=fps, codec="libx264", pix_fmt_in="rgb24",
        pix_fmt_out="yuv420p", quality=None, macro_block_size=1, ffmpeg_log_level="error",
        # bitexact: no encoder version strings or times in the file.
        output_params=["-crf", "20", "-preset", "veryfast", "-fflags", "+bitexact",
                       "-flags:v", "+bitexact", "-map_metadata", "-1"],
    )
    writer.send(None)
    count = 0
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame[..., :3]).tobytes())
            count += 1
    finally:
        writer.close()
    if count == 0:
        raise RenderError("nothing to animate: no frame")
    return count


def write_animation(path: Path, fmt: str, figure: Figure, animated: Sequence[Artist],
                    update: Callable[[int], None], frames: int, fps: float,
                    key_colors: Iterable[str], texts: Sequence[FrameText] = ()) -> int:
    """Run the animation loop into a GIF or MP4 at `path`; returns the frame count."""
    background, iterator = render_frames(figure, animated, update, frames, texts)
    if fmt == "gif":
        return write_gif(path, background, iterator, fps, key_colors)
    if fmt == "mp4":
        height, width = background.shape[:2]
        return write_mp4(path, iterator, fps, (width, height))
    raise RenderError(f"unknown animation format {fmt!r}; accepted: gif, mp4")
