# Build path 2: compile the three static binaries inside Docker, for machines
# with a registry but no Rust toolchain. Selected by deploy/compose.build.yaml,
# which hands this image to deploy/Dockerfile as its `bins` stage.
# Needs BuildKit (cache mounts). Untested on the project's own machines, which
# reach no registry; see the README.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    ./deploy/build.sh --no-images && cp -r dist/bin /out

FROM scratch AS bins
COPY --from=build /out/ /
