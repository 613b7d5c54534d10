# syntax=docker/dockerfile:1.7
#
# Keyward's image: docker, podman and buildah build it alike (docs/deploy.md).
#
#   docker build -t keyward .
#   docker run -p 8080:8080 keyward            # the embedded (in-memory) default
#
# The base images are build arguments, so that a machine without a registry builds the
# same file over bases it assembled itself (`cargo xtask image` does).

ARG BUILDER_IMAGE=docker.io/library/rust:1.95.0-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILDER_IMAGE} AS build
WORKDIR /src
# The toolchain the image brings, whatever rust-toolchain.toml names (rustup must not
# fetch components inside a build); no debug symbols in the shipped binary.
ENV RUSTUP_TOOLCHAIN=1.95.0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never
COPY . .
# The registry and the target directory are cache mounts: a change to Keyward's own crates
# recompiles those crates, never every dependency.
RUN --mount=type=cache,id=keyward-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=keyward-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p keyward \
    && mkdir -p /out/data \
    && cp target/release/keyward /out/keyward

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG SOURCE=https://github.com/keyward/keyward
LABEL org.opencontainers.image.title="Keyward" \
      org.opencontainers.image.description="Self-hostable API key management" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/keyward /usr/local/bin/keyward
# Where `keyward migrate` writes the first account's login (KEYWARD_BOOTSTRAP_FILE): a
# named volume mounted here starts owned by the user below.
COPY --from=build --chown=65532:65532 /out/data /var/lib/keyward
# Nothing else is written: the root filesystem may be read-only.
USER 65532:65532
ENV KEYWARD_LISTEN=0.0.0.0:8080 \
    KEYWARD_LOG_FORMAT=json
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=4s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/keyward", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/keyward"]
CMD ["serve"]
