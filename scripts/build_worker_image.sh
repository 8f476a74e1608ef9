#!/usr/bin/env bash
# Build the worker image and push it to Beaker, tagged with the git commit.
#
#   scripts/build_worker_image.sh [--dry-run] [--name NAME] [--workspace WORKSPACE]
#
# Runs, from the repository root:
#   docker build -f worker.Dockerfile -t NAME:COMMIT .
#   beaker image create --name NAME-COMMIT [--workspace WORKSPACE] NAME:COMMIT
# COMMIT is the short commit id, with "-dirty" when the work tree has uncommitted
# changes (such an image is not what the commit says). The Beaker image is then
# BEAKER_USER/NAME-COMMIT: pass that to `rslp launch --image`.
#
# --dry-run prints the commands and runs nothing (needs neither docker nor beaker).
# Exit codes: 0 done, 2 bad usage or a missing tool, else the failing command's code.
set -euo pipefail

usage() {
    sed -n '2,14s/^# \{0,1\}//p' "$0"
}

name="rslp-worker"
workspace=""
dry_run=false
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) dry_run=true ;;
        --name) name="${2:?--name needs a value}"; shift ;;
        --workspace) workspace="${2:?--workspace needs a value}"; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "build_worker_image.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

cd "$(dirname "$0")/.."
commit="$(git rev-parse --short HEAD)"
if [[ -n "$(git status --porcelain --untracked-files=no)" ]]; then
    commit="${commit}-dirty"
fi
tag="${name}:${commit}"

build=(docker build -f worker.Dockerfile -t "$tag" .)
push=(beaker image create --name "${name}-${commit}")
if [[ -n "$workspace" ]]; then
    push+=(--workspace "$workspace")
fi
push+=("$tag")

if $dry_run; then
    echo "${build[*]}"
    echo "${push[*]}"
    exit 0
fi

missing=()
command -v docker >/dev/null 2>&1 || missing+=("docker: install Docker Engine and make sure 'docker info' works")
command -v beaker >/dev/null 2>&1 || missing+=("beaker: install the Beaker CLI, then run 'beaker account login'")
if [[ ${#missing[@]} -gt 0 ]]; then
    for tool in "${missing[@]}"; do
        echo "build_worker_image.sh: missing $tool" >&2
    done
    echo "build_worker_image.sh: nothing was built; --dry-run prints the commands" >&2
    exit 2
fi

"${build[@]}"
"${push[@]}"
echo "pushed Beaker image ${name}-${commit}: rslp launch --image BEAKER_USER/${name}-${commit} ..."
