# The `fpnstream serve` image: the release binary built on Debian 12 with the Swift toolchain and the project's own
# scripts (scripts/setup, make release), then copied into a Debian 12 runtime with FFmpeg and OpenBLAS only.
#
#   docker build -t fpnstream:0.9.0 .          # from the repository root (deploy/kubernetes uses this tag)
#   docker run --rm -p 8080:8080 -v $PWD/cameras.yaml:/etc/fpnstream/cameras.yaml:ro fpnstream:0.9.0
#
# Models are not baked in: mount them (deploy/kubernetes mounts /models) and name them in the camera file or its
# pipelines; the repository's pipelines/ are in /usr/share/fpnstream/pipelines. docs/deploy.md has the details.
ARG SWIFT_IMAGE=swift:6.3-bookworm

FROM ${SWIFT_IMAGE} AS build
WORKDIR /src
# Debian packages first (their layer is reused while only the sources change).
COPY scripts/setup scripts/setup
RUN scripts/setup
COPY Package.swift Makefile ./
COPY Sources Sources
COPY Tests Tests
COPY Fuzz Fuzz
# The Swift runtime linked in, so the runtime image needs no toolchain.
RUN make release SWIFT_BUILD_FLAGS="--product fpnstream --static-swift-stdlib" \
    && install -D -m 0755 .build/release/fpnstream /out/fpnstream

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       libavformat59 libavcodec59 libswscale6 libavutil57 libopenblas0 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/fpnstream --create-home fpnstream
COPY --from=build /out/fpnstream /usr/local/bin/fpnstream
COPY pipelines /usr/share/fpnstream/pipelines
USER fpnstream
WORKDIR /var/lib/fpnstream
EXPOSE 8080
# SIGTERM (docker stop, Kubernetes) finalizes every camera's outputs and exits 0 within about 2 s.
ENTRYPOINT ["fpnstream"]
CMD ["serve", "--config", "/etc/fpnstream/cameras.yaml", "--listen", "0.0.0.0:8080"]
