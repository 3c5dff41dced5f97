# syntax=docker/dockerfile:1
#
# container-image-pusher on gcr.io/distroless/static, as one static binary.
#
#   docker build -t ghcr.io/example/container-image-pusher:0.1.0 .
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
# The image is x86_64 only (the deploy manifests pin kubernetes.io/arch:
# amd64); an arm64 variant needs an aarch64-unknown-linux-musl build stage.

ARG RUST_IMAGE=rust:1-bookworm
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${RUST_IMAGE} AS build
# bash for <<< below; pipefail so that no failure hides in a pipe.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# musl-tools: the musl C compiler (x86_64-linux-musl-gcc) that ring's C and
# assembly are built with for the musl target. No version pin: bookworm
# only ships fixes for it, and an exact pin breaks at each point release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
# Cache mounts keep the crate downloads and build artefacts between builds
# without putting them in a layer; the binary is copied out of the cached
# target/ because cache mounts are not part of the image. Symbols are
# stripped (smaller image; panics still name the location). A dynamic binary
# would fail on distroless/static only when started ("no such file or
# directory", for the missing loader), so the build refuses one.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked --target x86_64-unknown-linux-musl \
 && cp target/x86_64-unknown-linux-musl/release/container-image-pusher /container-image-pusher \
 && dynamic="$(readelf -d /container-image-pusher)" \
 && if grep NEEDED <<<"$dynamic"; then \
      echo "container-image-pusher is not statically linked (see NEEDED above)"; exit 1; \
    fi \
 && /container-image-pusher --version

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
# /metrics, /healthz, /readyz (--metrics-address).
EXPOSE 8080
ENTRYPOINT ["/container-image-pusher"]
