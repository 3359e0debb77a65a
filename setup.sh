#!/usr/bin/env bash
# Sets up robot_rl on a Debian/Ubuntu machine with or without a ROS 2 distribution:
# Mesa EGL (headless MuJoCo rendering), a venv, the ROS 2 wheels from PyPI, torch (CPU, pinned)
# and the package itself (editable). Re-running it is safe.
#   VENV=path  where the venv goes (default .venv)
set -euo pipefail
cd "$(dirname "$0")"
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"

# System libraries: Mesa EGL (headless MuJoCo rendering), libusb (pyrealsense2), hidapi
# (pyspacemouse). Installed only where one is missing.
if ! ldconfig -p 2>/dev/null | grep -q 'libEGL_mesa.so' \
   || ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0' \
   || ! ldconfig -p 2>/dev/null | grep -q 'libhidapi-hidraw.so.0'; then
  echo "setup: installing system libraries (Mesa EGL, libusb, hidapi)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libegl1 libegl-mesa0 libgl1-mesa-dri libgles2 \
    libusb-1.0-0 libhidapi-hidraw0 libhidapi-libusb0 >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating venv $VENV"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# Pinned: an unpinned torch pulls a multi-GB CUDA build where a CPU one is enough.
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q -e ".[ros-wheels,test]"
# A zarr 2 reader for the test that opens our stores the way Diffusion Policy's ReplayBuffer does.
if [ ! -x .venv-zarr2/bin/python ]; then
  "$PY" -m venv .venv-zarr2
  .venv-zarr2/bin/python -m pip install -q "zarr==2.18.*"
fi
"$VENV/bin/python" -c "import rclpy, mujoco, torch, onnxruntime, zarr, cv2, pyrealsense2, pyspacemouse; print('setup: ok (torch', torch.__version__, ', mujoco', mujoco.__version__, ')')"
