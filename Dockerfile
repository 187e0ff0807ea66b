# The privx-operator image: the operator binary on a base assembled from pinned Debian packages
# (glibc, libgcc, the CA roots), FROM scratch. No shell, no package manager, nothing pulled from
# a registry; runs as uid/gid 65532. Three steps (docs/installation.md):
#   cargo build --release --locked -p privx-operator --no-default-features --bin privx-operator
#   image/assemble        # target/image/<arch>/: the base (image/debian.lock) and the binary
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg SOURCE=https://github.com/ORG/privx-operator -t privx-operator:0.1.0 .
# Why outside: cargo builds the binary as most Go operators and External Secrets do, so the
# build needs no base image; the same Dockerfile is what CI builds and runs (.ci/image).
FROM scratch
# Set by BuildKit and buildah from the target platform (--platform linux/arm64 → arm64).
ARG TARGETARCH
ARG VERSION=""
ARG REVISION=""
ARG SOURCE=""
COPY target/image/${TARGETARCH}/base/ /
COPY image/etc/ /etc/
COPY LICENSE /usr/share/doc/privx-operator/LICENSE
COPY target/image/${TARGETARCH}/privx-operator /privx-operator
LABEL org.opencontainers.image.title="privx-operator" \
      org.opencontainers.image.description="Kubernetes operator that makes PrivX vault secrets and password policies declarative" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/privx-operator"]
CMD ["run"]
