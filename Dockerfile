# picket in a FROM scratch image: the static binary, CA certificates and a non-root user.
# Build it with `make docker` (it builds the binary and gathers the certificates first).
FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="picket" \
      org.opencontainers.image.description="Monitoring agent: host metrics, health checks, a Raft-elected log aggregator; OTLP and Prometheus" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/picket-dev/picket"
COPY build/docker/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY build/docker/passwd /etc/passwd
COPY --chown=65534:65534 build/docker/data/ /var/lib/picket/
COPY bin/picket /picket
USER 65534:65534
ENV HOME=/var/lib/picket
# gossip (tcp+udp), Raft/RPC, HTTP API and /metrics
EXPOSE 7946/tcp 7946/udp 7947/tcp 7948/tcp
VOLUME ["/var/lib/picket"]
ENTRYPOINT ["/picket"]
CMD ["agent"]
