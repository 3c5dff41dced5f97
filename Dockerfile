# syntax=docker/dockerfile:1
#
# container-image-pusher on gcr.io/distroless/static, as one static binary.
#
#   docker build -t ghcr.io/example/container-image-pusher:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     -t ghcr.io/example/container-image-pusher:0.1.0 --push .
#
# Why distroless/static and not distroless/cc (the usual base for Rust):
# - static is about 2 MB in a single layer and still has what a network
#   service needs from a "distro": CA certificates (/etc/ssl/certs, read by
#   rustls-native-certs for registries and remote-write endpoints over
#   HTTPS), the tz database, /etc/passwd and /etc/group with the nonroot
#   user (65532), and /tmp. Unlike scratch, nothing has to be copied in.
# - base adds a second layer of shared libraries (glibc, OpenSSL: about 10x
#   the size, ~20 MB), and cc a third with libgcc and libstdc++, which a
#   glibc Rust binary needs. None of it is needed here: TLS is rustls with
#   ring (no OpenSSL; `cargo tree -i openssl-sys` finds nothing), and a musl
#   build links libc and the unwinder statically. Less in the image is less
#   for a CVE scanner to report and nothing for an attacker to use: there is
#   no shell, package manager or libc in it.
# scripts/check-static verifies both claims on a development machine: the
# glibc build needs only libc, libm, libgcc_s and the loader; the musl build
# needs no shared library.
#
# Multi-arch: amd64 and arm64. The build stage runs on the build machine's
# platform (no emulation) and cross-compiles to the musl target of each
# TARGETARCH (the mapping below; tests/it/deploy.rs checks that each names a
# target `rustc --print target-list` knows). ring's C and assembly need a C
# compiler for the target: musl-gcc natively, Debian's gcc-aarch64-linux-gnu
# across (the musl target links Rust's self-contained musl C runtime, so a
# glibc cross compiler serves). Nothing in the manifests pins an
# architecture.

ARG RUST_IMAGE=rust:1-bookworm
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM --platform=$BUILDPLATFORM ${RUST_IMAGE} AS build
ARG TARGETARCH
# The commit, for container_image_pusher_build_info (.git is not in the
# build context): --build-arg REVISION=$(git rev-parse --short=12 HEAD).
ARG REVISION=unknown
# bash for <<< below; pipefail so that no failure hides in a pipe.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The Rust target of each image architecture.
RUN case "${TARGETARCH:-amd64}" in \
      amd64) echo x86_64-unknown-linux-musl ;; \
      arm64) echo aarch64-unknown-linux-musl ;; \
      *) echo "unsupported TARGETARCH ${TARGETARCH}: amd64 or arm64" >&2; exit 1 ;; \
    esac >/rust-target
# musl-tools: the musl C compiler (x86_64-linux-musl-gcc) for the native
# x86_64 build; gcc-aarch64-linux-gnu for arm64 from an x86_64 machine
# (from an arm64 machine, musl-tools is native there). No version pin:
# bookworm only ships fixes for them, and an exact pin breaks at each point
# release.
# hadolint ignore=DL3008
RUN packages=(musl-tools) \
 && if [[ "$(cat /rust-target)" == aarch64-* && "$(uname -m)" != aarch64 ]]; then \
      packages+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross); \
    fi \
 && apt-get update \
 && apt-get install -y --no-install-recommends "${packages[@]}" \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add "$(cat /rust-target)"
WORKDIR /src
COPY . .
# Cache mounts keep the crate downloads and build artefacts between builds
# without putting them in a layer; the binary is copied out of the cached
# target/ because cache mounts are not part of the image. Symbols are
# stripped (smaller image; panics still name the location). A dynamic binary
# would fail on distroless/static only when started ("no such file or
# directory", for the missing loader), so the build refuses one. A
# cross-built binary cannot run here; its --version is run natively only.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=target-${TARGETARCH} \
    target="$(cat /rust-target)" \
 && if [[ "$target" == aarch64-* && "$(uname -m)" != aarch64 ]]; then \
      export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc \
             AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar \
             CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc; \
    fi \
 && CARGO_PROFILE_RELEASE_STRIP=symbols CONTAINER_IMAGE_PUSHER_REVISION="${REVISION}" \
    cargo build --release --locked --target "$target" \
 && cp "target/$target/release/container-image-pusher" /container-image-pusher \
 && dynamic="$(readelf -d /container-image-pusher)" \
 && if grep NEEDED <<<"$dynamic"; then \
      echo "container-image-pusher is not statically linked (see NEEDED above)"; exit 1; \
    fi \
 && if [[ "$target" == "$(uname -m)"-* ]]; then /container-image-pusher --version; fi

FROM ${BASE_IMAGE}
ARG BASE_IMAGE
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="container-image-pusher" \
      org.opencontainers.image.description="Pushes the inventory of container images configured in a Kubernetes cluster to Prometheus remote-write receivers" \
      org.opencontainers.image.source="https://github.com/example/container-image-pusher" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
COPY --from=build /container-image-pusher /container-image-pusher
# distroless' nonroot user, by number so that Kubernetes can check
# runAsNonRoot without reading /etc/passwd.
USER 65532:65532
# /metrics: the inventory (--metrics-address); the service's own metrics,
# /healthz and /readyz (--telemetry-address).
EXPOSE 8080 8081
ENTRYPOINT ["/container-image-pusher"]
