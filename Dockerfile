# The stead image: one static `stead` binary that is both the operator (`stead operator`) and the
# sidecar (`stead proxy`). Build and push (see docs/deploy-to-kubernetes.md):
#
#   docker build -t $REGISTRY/stead:0.1.0 .
#   docker push $REGISTRY/stead:0.1.0
#
# Stage 1 builds a fully static binary (musl); stage 2 is an empty image holding only that
# binary, the CA bundle (for stores reached over TLS) and a passwd entry for the non-root user.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p stead-cli --bin stead --target x86_64-unknown-linux-musl \
 && install -D -m 0755 target/x86_64-unknown-linux-musl/release/stead /out/usr/local/bin/stead \
 && install -D -m 0644 /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ca-certificates.crt \
 && mkdir -p /out/etc \
 && echo 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' > /out/etc/passwd \
 && echo 'nonroot:x:65532:' > /out/etc/group

FROM scratch
COPY --from=build /out/ /
ENV PATH=/usr/local/bin
# The same uid the install Deployment and rendered pods run as (runAsNonRoot).
USER 65532:65532
ENTRYPOINT ["stead"]
CMD ["operator"]
