# syntax=docker/dockerfile:1
#
# slack-token-operator image: one static binary, the CA roots, a passwd and group entry for the
# unprivileged uid/gid 65532, and nothing else (no shell, no libc, no package manager).
#
#   docker build -t slack-token-operator:dev .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/slack-token-operator:TAG \
#     --build-arg VERSION=TAG --build-arg REVISION="$(git rev-parse HEAD)" --push .
#
# Without Docker or a registry, `scripts/image` builds the same image from local files (the
# final stage below, with the binary built by the same command); tests/image.rs checks that the
# two agree on the build flags, the files, the user, the entrypoint and the labels.
#
# The binary is built without the default `emulator` feature, so the test emulators (and the
# `demo`/`emulate` subcommands) are not in the image. It is linked statically against glibc
# (`crt-static`): no libc in the image, and no musl toolchain needed. CA roots: the Kubernetes
# client reads the system's (/etc/ssl/certs/ca-certificates.crt, Debian's ca-certificates, or
# SSL_CERT_FILE); the Slack client's are compiled in (webpki roots). It writes nothing to disk
# but the crash journal (--journal-dir, an emptyDir in the chart), so the root filesystem can be
# read-only.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
ARG TARGETARCH
# On arm64, jemalloc (the operator's allocator) is built for pages of up to 64 KiB: some arm64
# kernels use them, and a jemalloc built for 4 KiB pages does not start there.
RUN case "${TARGETARCH:-amd64}" in \
      amd64) echo x86_64-unknown-linux-gnu ;; \
      arm64) echo aarch64-unknown-linux-gnu ;; \
      *) echo "unsupported TARGETARCH: ${TARGETARCH}" >&2; exit 1 ;; \
    esac > /rust-target \
 && case "${TARGETARCH:-amd64}" in \
      arm64) echo 'export JEMALLOC_SYS_WITH_LG_PAGE=16' ;; \
      *) echo ':' ;; \
    esac > /build-env
ENV RUSTFLAGS="-C target-feature=+crt-static"
WORKDIR /src

# Dependencies first, against stub sources: this layer is rebuilt only when the
# manifests or Cargo.lock change, not on every source edit. Every workspace
# member needs its manifest and a target for Cargo to load the workspace.
COPY Cargo.toml Cargo.lock build.rs ./
COPY crates/kube-emulator/Cargo.toml crates/kube-emulator/Cargo.toml
COPY crates/slack-emulator/Cargo.toml crates/slack-emulator/Cargo.toml
# Cargo resolves the explicit [[bench]] targets when it loads the manifest.
COPY benches benches
RUN mkdir -p src crates/kube-emulator/src crates/slack-emulator/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs crates/kube-emulator/src/lib.rs crates/slack-emulator/src/lib.rs \
 && . /build-env \
 && SOURCE_REVISION=stub cargo build --release --locked --no-default-features --bin slack-token-operator --target "$(cat /rust-target)" \
 && rm -rf src crates/kube-emulator/src crates/slack-emulator/src

# Then the operator itself. COPY keeps the files' modification times, which may
# be older than the stub build: touch the crate roots so Cargo rebuilds them.
COPY src src
COPY crates crates
ARG REVISION=unknown
RUN touch src/main.rs src/lib.rs \
 && . /build-env \
 && SOURCE_REVISION="${REVISION}" cargo build --release --locked --no-default-features --bin slack-token-operator --target "$(cat /rust-target)" \
 && cp "target/$(cat /rust-target)/release/slack-token-operator" /slack-token-operator

FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
COPY --from=builder /slack-token-operator /slack-token-operator
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY image/passwd /etc/passwd
COPY image/group /etc/group
LABEL org.opencontainers.image.source="https://github.com/slack-token-operator/slack-token-operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.title="slack-token-operator"
USER 65532:65532
WORKDIR /
EXPOSE 8080
ENTRYPOINT ["/slack-token-operator"]
CMD ["run"]
