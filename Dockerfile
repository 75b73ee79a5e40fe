# syntax=docker/dockerfile:1
# The Sluice operator image: ghcr.io/sluice-dev/sluice:<version>, built by
# .github/workflows/release.yaml on a tag v<version>; `docker build -t IMAGE .` builds it
# locally (docs/install.md). Entrypoint `sluice run`: a Deployment passes only flags.

# The workspace's rust-version (Cargo.toml), so a release builds with the toolchain CI tests.
# Alpine's Rust targets musl and links statically: the same binary also runs as the config
# reloader inside the data-plane images (fluentd's and fluent-bit's), whatever libc they carry
# (docs/architecture.md, "Config reload").
# It allocates with mimalloc (operator/src/main.rs), not musl's malloc, which took 1.8 times
# as long per edit at 10,000 flows (operator/benches/README.md).
FROM docker.io/library/rust:1.89-alpine AS build
RUN apk add --no-cache musl-dev
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

# CA certificates, no libc, no shell, no package manager: the binary is static.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sluice /usr/local/bin/sluice
# distroless's nonroot user, numerically, so runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sluice", "run"]
