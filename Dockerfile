# Build: docker build -t dbwarden .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin dbwarden

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/dbwarden --create-home dbwarden
COPY --from=build /src/target/release/dbwarden /usr/local/bin/dbwarden
USER dbwarden
WORKDIR /var/lib/dbwarden
EXPOSE 8200
ENTRYPOINT ["/usr/local/bin/dbwarden"]
CMD ["server", "--config", "/etc/dbwarden/dbwarden.toml"]
