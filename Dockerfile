# syntax=docker/dockerfile:1
# agora's container image: `docker build -t agora .` at the repository root.
#
# Build stage: the Rust toolchain compiles the one binary. Runtime stage: Debian bookworm-slim
# with what agora runs (packaging/runtime-packages: git, openssh-client, ca-certificates), as the
# unprivileged user `agora`, with its data under the volume /var/lib/agora.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The caches keep the registry and incremental state between builds; the binary is copied out
# of the cache mount so the next stage can see it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p agora \
    && install -m 0755 target/release/agora /usr/local/bin/agora

FROM debian:bookworm-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates git openssh-client \
    && rm -rf /var/lib/apt/lists/*
# A system user whose home is the data directory: git and ssh find ~/.gitconfig, ~/.ssh and
# ~/.netrc there (mount them, or put them in the volume). Fixed ids, so that an orchestrator can
# name them (Kubernetes: runAsUser and fsGroup 10001 make mounted secrets readable).
RUN groupadd --system --gid 10001 agora \
    && useradd --system --uid 10001 --gid agora --home-dir /var/lib/agora --create-home \
        --shell /usr/sbin/nologin agora \
    && install -d -o root -g agora -m 0750 /etc/agora
COPY --from=build /usr/local/bin/agora /usr/bin/agora

# Only the data directory is set here (agora's default listen address is 0.0.0.0:3000): an
# AGORA_* variable beats the configuration file, so the image sets no more than it must.
ENV AGORA_DATA_DIR=/var/lib/agora
VOLUME ["/var/lib/agora"]
EXPOSE 3000
USER agora
WORKDIR /var/lib/agora
# The binary asks itself (the runtime has no curl): /readyz on the configured listen address.
# A configuration file that moves the port needs `agora healthcheck --url ...` here.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
    CMD ["agora", "healthcheck"]
ENTRYPOINT ["agora"]
CMD ["serve"]
