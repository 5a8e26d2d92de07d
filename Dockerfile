# promfed's container image, for machines that can pull base images:
#
#   docker build -t ghcr.io/promfed/promfed:0.1.0 .
#
# Multi-stage: a Rust builder, then distroless "cc" (glibc, libgcc, CA
# certificates, user 65532 "nonroot"; no shell, no package manager). Where
# no base image can be pulled, scripts/image builds the same layout with
# buildah from scratch: the binary, the libraries ldd lists, the CA bundle,
# /etc/passwd for 65532, and the runtime config below. tests/image.rs checks
# that the two agree (entrypoint, command, user, port, labels) and runs that
# image as user 65532 against real Prometheus servers.
ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin promfed

FROM gcr.io/distroless/cc-debian12:nonroot
# Keep equal to Cargo.toml's version (tests/image.rs checks it).
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="promfed" \
      org.opencontainers.image.description="Federated PromQL gateway" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/promfed/promfed" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /src/target/release/promfed /usr/local/bin/promfed
USER 65532:65532
EXPOSE 9090
# The chart's `args` (serve --config=/etc/promfed/config/promfed.yaml and
# its extraArgs) replace CMD and keep the entrypoint, so the two are split.
ENTRYPOINT ["/usr/local/bin/promfed"]
CMD ["serve", "--config", "/etc/promfed/config/promfed.yaml"]
