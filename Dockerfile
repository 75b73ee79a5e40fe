# syntax=docker/dockerfile:1
# The Sluice operator image: ghcr.io/sluice-dev/sluice:<version>, built by
# .github/workflows/release.yaml on a tag v<version>; `docker build -t IMAGE .` builds it
# locally (docs/install.md). Entrypoint `sluice run`: a Deployment passes only flags.

# The workspace's rust-version (Cargo.toml), so a release builds with the toolchain CI tests.
FROM docker.io/library/rust:1.89-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY operator operator
COPY e2e e2e
# `sluice crds --api-docs` embeds the examples.
COPY examples examples
# Cache mounts keep the registry and build between local rebuilds; the image holds neither.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --package sluice --bin sluice \
 && install -D -m 0755 target/release/sluice /out/sluice

# glibc and CA certificates, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/sluice /usr/local/bin/sluice
# distroless's nonroot user, numerically, so runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sluice", "run"]
