# Sourced by the other scripts: make sure `uv` (the installer we lock with) is on PATH.
UV_VERSION=0.13.8
if ! command -v uv >/dev/null 2>&1; then
    echo "installing uv ${UV_VERSION} from PyPI..." >&2
    python3 -m pip install --quiet --disable-pip-version-check "uv==${UV_VERSION}" \
        || python3 -m pip install --quiet --user --disable-pip-version-check "uv==${UV_VERSION}"
    export PATH="$HOME/.local/bin:$PATH"
fi
# Use the machine's Python 3.11; never download an interpreter at install time.
export UV_PYTHON_DOWNLOADS=never
