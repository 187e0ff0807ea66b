# syntax=docker/dockerfile:1
# The privx-operator image: the static-ish Rust binary (it links glibc) on distroless, as non-root.
#   docker build -t privx-operator:0.1.0 .

FROM rust:1-bookworm AS build
WORKDIR /src
# Only what the binary is built from (see .dockerignore); tests, docs and the chart stay out.
# The workspace manifest names every member, so crates/ comes along; the operator is built
# without its default `embedded-privx` feature: no simulator code in the image (CI checks the
# dependency tree of exactly this build).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p privx-operator --no-default-features --bin privx-operator \
    && install -D -m 0755 target/release/privx-operator /out/privx-operator

# cc-debian12 carries glibc, libgcc and the CA roots the binary needs, and nothing else
# (no shell, no package manager). The :nonroot tag runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="privx-operator" \
      org.opencontainers.image.description="Kubernetes operator that makes PrivX vault secrets and password policies declarative" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/privx-operator /privx-operator
USER nonroot
EXPOSE 8080
ENTRYPOINT ["/privx-operator"]
CMD ["run"]
