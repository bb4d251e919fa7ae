# syntax=docker/dockerfile:1
# tripline's container image: the release binary with the default features (the Kafka source
# and sink included), on a distroless base: no shell, no package manager, a non-root user.
#   docker build -t ghcr.io/tripline/tripline:0.1.0 .

# The builder's Debian release (bookworm) matches the runtime's (debian12), so the binary
# links against the same glibc and OpenSSL 3. The full image has what librdkafka's bundled
# build needs (a C toolchain, make, perl, the OpenSSL and zlib headers).
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
COPY . .
# The binary links libssl, libcrypto and libz dynamically (ldd target/release/tripline);
# distroless/cc has glibc, libgcc and OpenSSL but not zlib, so zlib is copied along.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tripline \
 && mkdir -p /out/usr/local/bin \
 && cp target/release/tripline /out/usr/local/bin/tripline \
 && cp -a --parents /usr/lib/"$(gcc -dumpmachine)"/libz.so.1* /out/

# distroless/cc-debian12: glibc, libgcc_s, OpenSSL 3, CA certificates. `nonroot` runs as user
# and group 65532; the Kubernetes manifests set the same ids (and user 0, with every
# capability dropped, only where the API server's 0600 log files must be read).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /
USER 65532:65532
# /metrics, /healthz and /readyz (telemetry.listen), and the audit webhook.
EXPOSE 9090 9443
ENTRYPOINT ["/usr/local/bin/tripline"]
CMD ["run", "--config", "/etc/tripline/config/tripline.yaml"]
