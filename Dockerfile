# syntax=docker/dockerfile:1
# sluice container image.
#
#   docker build -t sluice .
#   docker run --rm -p 8080:8080 -p 9901:9901 sluice
#   docker run --rm -v "$PWD/my.yaml:/etc/sluice/sluice.yaml:ro" -p 8080:8080 sluice
#
# Build stage: the project's own dependency script and the README's Release
# build. Runtime stage: Debian's shared libraries only, a non-root user.
ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${DEBIAN_IMAGE} AS build
WORKDIR /src
# Dependencies first, so editing sources does not reinstall them.
COPY scripts/setup.sh scripts/setup.sh
RUN bash scripts/setup.sh build && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release \
      -DSLUICE_BUILD_TESTS=OFF -DSLUICE_BUILD_BENCHMARKS=OFF \
 && cmake --build build -j"$(nproc)" --target sluice
# The default configuration is config/sluice.yaml listening on all
# interfaces (the container's loopback is unreachable from outside), checked
# by the binary just built: an invalid file fails the image build.
RUN mkdir /out \
 && sed -e 's/^  listen: 127\.0\.0\.1:8080/  listen: 0.0.0.0:8080/' \
        -e 's/^  admin_listen: 127\.0\.0\.1:9901/  admin_listen: 0.0.0.0:9901/' \
        config/sluice.yaml >/out/sluice.yaml \
 && grep -Eq '^  listen: 0\.0\.0\.0:8080( |$)' /out/sluice.yaml \
 && grep -Eq '^  admin_listen: 0\.0\.0\.0:9901( |$)' /out/sluice.yaml \
 && build/proxy/sluice --check-config /out/sluice.yaml \
 && install -m 0755 build/proxy/sluice /out/sluice

FROM ${DEBIAN_IMAGE}
# The shared libraries sluice links (ldd build/proxy/sluice); libc6,
# libstdc++6 and libgcc-s1 come with the base image. scripts/chart-check.sh
# checks this list against the binary.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libevent-core-2.1-7 \
      libevent-extra-2.1-7 \
      libevent-pthreads-2.1-7 \
      libhiredis0.14 \
      libyaml-cpp0.7 \
      libprometheus-cpp-core1.0 \
      libssl3 \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 sluice \
 && useradd --system --uid 10001 --gid sluice --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin sluice
COPY --from=build /out/sluice /usr/local/bin/sluice
COPY --from=build /out/sluice.yaml /etc/sluice/sluice.yaml
# Fails the build if a runtime library is missing.
RUN sluice --version && sluice --check-config /etc/sluice/sluice.yaml
USER 10001:10001
EXPOSE 8080 9901
# Arguments given to `docker run` (or the chart's args) are appended, e.g.
# --log-level debug, or --check-config FILE to validate a file and exit.
ENTRYPOINT ["/usr/local/bin/sluice", "--config", "/etc/sluice/sluice.yaml"]
