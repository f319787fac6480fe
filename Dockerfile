# Multi-stage build: compile with the checked-in query data (.sqlx/), so no
# database is needed at build time; ship only the binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
ENV SQLX_OFFLINE=true
COPY . .
RUN cargo build --release --locked --bin roomd

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /nonexistent roomd
COPY --from=build /src/target/release/roomd /usr/local/bin/roomd
USER roomd
ENV ROOMD_BIND=0.0.0.0:8080 \
    ROOMD_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["roomd"]
