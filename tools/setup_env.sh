#!/usr/bin/env bash
# Create (or update) the virtual environment .venv with lidarcl and every dependency.
#   TORCH_SPEC   torch requirement to install first (default torch==2.13.0, the CPU build
#                this project is developed on; a GPU user sets e.g. TORCH_SPEC=torch==2.5.1)
#   LIDARCL_VENV where to create the environment (default .venv in the repository)
set -euo pipefail
cd "$(dirname "$0")/.."

# open3d needs libusb to import, and Vulkan + Mesa for off-screen rendering.
if command -v dpkg >/dev/null 2>&1; then
  missing=()
  for pkg in libusb-1.0-0 libvulkan1 mesa-vulkan-drivers; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "setup_env: installing system packages ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

venv="${LIDARCL_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
"${pip[@]}" setuptools wheel ninja  # ninja: parallel, incremental builds of lidarcl._C
# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
# shellcheck disable=SC2086  (TORCH_SPEC may carry pip options)
"${pip[@]}" ${TORCH_SPEC:-torch==2.13.0}
# --no-build-isolation: the compiled extension builds against the torch installed above.
"${pip[@]}" --no-build-isolation -e ".[test]"
echo "setup_env: ready ($venv)"
