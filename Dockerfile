# syntax=docker/dockerfile:1
#
# slack-token-operator image: a static (musl) binary on distroless/static,
# running as the unprivileged uid/gid 65532 with no shell and no package manager.
#
#   docker build -t slack-token-operator:dev .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/slack-token-operator:TAG --push .
#
# The binary is built without the default `emulator` feature, so the test
# emulators (and the `demo`/`emulate` subcommands) are not in the image. At run
# time it needs nothing but the network: CA roots are compiled in (webpki
# roots) and it writes nothing to disk, which fits the chart's read-only root
# filesystem.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
ARG TARGETARCH
# musl-gcc for the C/assembly parts of `ring` and for jemalloc, the operator's allocator.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
# On arm64, jemalloc is built for pages of up to 64 KiB: some arm64 kernels use them, and a
# jemalloc built for 4 KiB pages does not start there.
RUN case "${TARGETARCH:-amd64}" in \
      amd64) echo x86_64-unknown-linux-musl ;; \
      arm64) echo aarch64-unknown-linux-musl ;; \
      *) echo "unsupported TARGETARCH: ${TARGETARCH}" >&2; exit 1 ;; \
    esac > /rust-target \
 && case "${TARGETARCH:-amd64}" in \
      arm64) echo 'export JEMALLOC_SYS_WITH_LG_PAGE=16' ;; \
      *) echo ':' ;; \
    esac > /build-env \
 && rustup target add "$(cat /rust-target)"
WORKDIR /src

# Dependencies first, against stub sources: this layer is rebuilt only when the
# manifests or Cargo.lock change, not on every source edit. Every workspace
# member needs its manifest and a target for Cargo to load the workspace.
COPY Cargo.toml Cargo.lock ./
COPY crates/kube-emulator/Cargo.toml crates/kube-emulator/Cargo.toml
COPY crates/slack-emulator/Cargo.toml crates/slack-emulator/Cargo.toml
# Cargo resolves the explicit [[bench]] targets when it loads the manifest.
COPY benches benches
RUN mkdir -p src crates/kube-emulator/src crates/slack-emulator/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs crates/kube-emulator/src/lib.rs crates/slack-emulator/src/lib.rs \
 && . /build-env \
 && cargo build --release --locked --no-default-features --bin slack-token-operator --target "$(cat /rust-target)" \
 && rm -rf src crates/kube-emulator/src crates/slack-emulator/src

# Then the operator itself. COPY keeps the files' modification times, which may
# be older than the stub build: touch the crate roots so Cargo rebuilds them.
COPY src src
COPY crates crates
RUN touch src/main.rs src/lib.rs \
 && . /build-env \
 && cargo build --release --locked --no-default-features --bin slack-token-operator --target "$(cat /rust-target)" \
 && cp "target/$(cat /rust-target)/release/slack-token-operator" /slack-token-operator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /slack-token-operator /slack-token-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/slack-token-operator"]
CMD ["run"]
