# Build: docker build -t dbwarden .
# One image, three roles: `server`, the sidecar `agent` and the `csi-provider` (see
# docker-compose.yml for the agent demo and deploy/kubernetes/ for all three). The gRPC code of
# the CSI provider is checked in, so the build needs no protoc.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin dbwarden

FROM debian:bookworm-slim
# /etc/secrets: where the agent writes credentials (a volume mounted there starts with this owner).
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 999 --home /var/lib/dbwarden --create-home dbwarden \
    && install -d -o dbwarden -g dbwarden -m 0750 /etc/secrets
COPY --from=build /src/target/release/dbwarden /usr/local/bin/dbwarden
USER dbwarden
WORKDIR /var/lib/dbwarden
# 8200: the server's API; 8201: the agent's /healthz and /metrics.
EXPOSE 8200 8201
ENTRYPOINT ["/usr/local/bin/dbwarden"]
CMD ["server", "--config", "/etc/dbwarden/dbwarden.toml"]
