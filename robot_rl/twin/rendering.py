"""Offscreen rendering of the twin's cameras, on demand only (headless: MUJOCO_GL=egl).

One mujoco.Renderer (one GL context) per env, created on the first render, shared by all its
cameras at the configured image size. Shadows and multisampling are set in the model
(sim/cell.xml, TwinConfig.render_*) and are off by default.
"""
from __future__ import annotations

import mujoco
import numpy as np


class CameraRenderer:
    def __init__(self, model: mujoco.MjModel, height: int, width: int):
        self.model = model
        self.height, self.width = int(height), int(width)
        self._renderer = None

    def render(self, data: mujoco.MjData, camera: str) -> np.ndarray:
        if self._renderer is None:
            try:
                self._renderer = mujoco.Renderer(self.model, self.height, self.width)
            except mujoco.FatalError as e:
                raise RuntimeError(
                    f"cannot open an OpenGL context ({e}); headless machines need MUJOCO_GL=egl "
                    "set before mujoco is first imported (importing robot_rl.twin first does it)"
                ) from e
        self._renderer.update_scene(data, camera=camera)
        return self._renderer.render()  # a new uint8 (H, W, 3) array

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
