#!/usr/bin/env python3
"""The in-Docker build, end to end, the way a newcomer runs it.

Takes a clean clone of this repository's committed HEAD (no dist/, no
target/, no host-built binary), runs the README's command there,

    docker compose -f compose.yaml up --build --wait

which compiles the three binaries inside Docker (deploy/Dockerfile, stage
`build`), checks what a user sees (/api/hello, and the page in headless
Chromium) and that the images are the same kind as the host-built ones (one
static binary FROM scratch, non-root, small), then tears the stack down with
its images.

The project name, host port and image tag are given as environment variables,
so the command stays the README's and it never touches a `softy-pinko` stack
or the softy-pinko/*:dev images.

Needs the builder image that deploy/Dockerfile's `FROM rust:...` names, from a
registry or the local stand-in that deploy/rust-stand-in.sh makes. The build's
whole output goes to target/e2e-from-source.log.
Exit status: 0 when it passed; the last line reads "N passed, N failed".
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import e2e
from e2e import ROOT, Failed, check, log

COMMAND = ["docker", "compose", "-f", "compose.yaml", "up", "--build", "--wait"]
# A first build compiles the whole workspace in release mode: about 20 minutes
# on 2 cores. Later ones reuse BuildKit's cache.
BUILD_TIMEOUT = 50 * 60
BUILD_LOG = ROOT / "target" / "e2e-from-source.log"


def git(*args, cwd=ROOT):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def build_and_start(clone, env):
    """Runs the README's command in the clone; returns (seconds, whether cargo ran)."""
    BUILD_LOG.parent.mkdir(exist_ok=True)
    log(f"in {clone}: {' '.join(COMMAND)} (output: {BUILD_LOG.relative_to(ROOT)})")
    t0 = time.monotonic()
    with open(BUILD_LOG, "w") as out:
        proc = subprocess.Popen(COMMAND, cwd=clone, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            while True:
                try:
                    proc.wait(timeout=60)
                    break
                except subprocess.TimeoutExpired:
                    took = time.monotonic() - t0
                    if took > BUILD_TIMEOUT:
                        raise Failed(f"not built and healthy after {took / 60:.0f} minutes")
                    compiled = BUILD_LOG.read_text(errors="replace").count(" Compiling ")
                    log(f"building: {took / 60:.0f} min, {compiled} crates compiled so far")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    took = time.monotonic() - t0
    output = BUILD_LOG.read_text(errors="replace")
    if proc.returncode != 0:
        print("\n".join(output.splitlines()[-60:]))
        raise Failed(f"{' '.join(COMMAND)} exited {proc.returncode} after {took:.0f}s")
    return took, re.search(r"Finished `release` profile", output) is not None


def check_images(tag):
    """The same kind of image as the host-built path: non-root, and small enough to
    hold nothing but the binary (any base image with a libc or a shell is larger)."""
    sizes = []
    for svc in ("lb", "backend", "frontend"):
        image = f"softy-pinko/{svc}:{tag}"
        user, size = e2e.docker("image", "inspect", "-f", "{{.Config.User}} {{.Size}}",
                                image).split()
        check(user == "10001:10001", f"{image} runs as {user!r}")
        check(int(size) <= 16_000_000, f"{image} is {int(size) / 1e6:.1f} MB (> 16 MB)")
        sizes.append(f"{svc} {int(size) / 1e6:.1f} MB")
    return ", ".join(sizes)


def export_bins(tag, dest):
    """Copies the three binaries out of the images just built into `dest` (deploy/test.sh
    in CI: the host stages then use this build instead of compiling the same commit a
    second time)."""
    dest.mkdir(parents=True, exist_ok=True)
    for svc in ("lb", "backend", "frontend"):
        container = e2e.docker("create", f"softy-pinko/{svc}:{tag}").strip()
        try:
            e2e.docker("cp", f"{container}:/{svc}", str(dest / svc))
        finally:
            e2e.docker("rm", container)
    log(f"exported lb, backend and frontend to {dest}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--export-bins", metavar="DIR", type=Path,
                   help="once passed, copy the three binaries out of the images into DIR")
    args = p.parse_args()
    if (rc := e2e.without_docker()) is not None:
        return rc
    pid = os.getpid()
    tag = f"fromsource-{pid}"
    env = dict(os.environ, COMPOSE_PROJECT_NAME=f"softy-src-{pid}", SOFTY_PORT=str(e2e.PORT),
               SOFTY_TLS_PORT=str(e2e.TLS_PORT), SOFTY_TAG=tag)
    commit = git("rev-parse", "HEAD")
    passed = False
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "softy-pinko"
        git("clone", "--quiet", "--no-checkout", str(ROOT), str(clone))
        git("checkout", "--quiet", "--detach", commit, cwd=clone)
        try:
            check(not (clone / "dist").exists(), "the clone has a dist/: is dist/ committed?")
            took, compiled = build_and_start(clone, env)
            how = "compiled inside Docker" if compiled else "the build stage came from BuildKit's cache"
            log(f"built and healthy in {took:.0f}s ({how}), commit {commit[:12]}, port {e2e.PORT}")
            e2e.check_hello_and_page()
            log(f"images: {check_images(tag)}")
            if args.export_bins:
                export_bins(tag, args.export_bins)
            passed = True
        except (Failed, OSError, subprocess.SubprocessError) as e:
            log(f"FAIL from_source: {e}")
        finally:
            subprocess.run(["docker", "compose", "-f", "compose.yaml", "down", "--rmi", "all",
                            "--volumes", "--timeout", "20"],
                           cwd=clone, env=env, capture_output=True, timeout=180)
    print(f"{int(passed)} passed, {int(not passed)} failed")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
