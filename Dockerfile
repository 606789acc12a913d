# Dockerfile: the herd image for machines with registry access, as a normal
# multi-stage build (`docker build -t herd .`, or `docker compose build`).
# The builder compiles herd and herdctl; docker/rootfs.sh packs them with the
# shared libraries they load into a root file system that the final stage
# copies into an image FROM scratch (no shell, no package manager, about the
# size of the binaries). Without registry access use docker/build-local.sh
# (docker/Dockerfile.local): the same runtime part, built from the binaries
# cargo built on the machine, pulling nothing.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin herd --bin herdctl \
 && docker/rootfs.sh target/release /out/rootfs \
 && mkdir -p /out/data /out/secret

FROM scratch
COPY --from=build /out/rootfs/ /
COPY --from=build --chown=65532:65532 /out/data/ /data/
COPY --from=build --chown=65532:65532 /out/secret/ /secret/
# ---- runtime (identical in docker/Dockerfile.local; a test compares) ----
ENV HERD_CONFIG=/etc/herd/Settings.toml RUST_LOG=info
USER 65532:65532
WORKDIR /data
VOLUME ["/data"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/herd"]
