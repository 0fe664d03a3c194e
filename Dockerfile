# syntax=docker/dockerfile:1
# PriceStream image: a release build in a Rust stage, then a slim runtime that runs the
# `pricestream` binary as an unprivileged user. `docker compose build` uses it.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin pricestream \
 && install -m 0755 target/release/pricestream /usr/local/bin/pricestream

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 pricestream \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/pricestream --create-home pricestream
COPY --from=build /usr/local/bin/pricestream /usr/local/bin/pricestream
COPY config/pricestream.example.toml /etc/pricestream/pricestream.example.toml
USER 10001:10001
WORKDIR /var/lib/pricestream
ENV PRICESTREAM_DATA_DIR=/var/lib/pricestream \
    PRICESTREAM_API__LISTEN=0.0.0.0:8080 \
    PRICESTREAM_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/health/ready >/dev/null || exit 1
ENTRYPOINT ["pricestream"]
CMD ["run"]
