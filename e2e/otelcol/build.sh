#!/bin/sh
# build.sh — builds otelcol-picket, the small OpenTelemetry Collector picket's end-to-end
# tests export to (OTLP receiver, batch processor, file and debug exporters). It lives in its
# own Go module so the collector's dependencies stay out of picket's go.mod.
#
#   e2e/otelcol/build.sh            # writes e2e/otelcol/otelcol-picket
#   PICKET_OTELCOL=/path/otelcol-picket go test ./e2e/...   # to use a binary elsewhere
set -eu
cd "$(dirname "$0")"
CGO_ENABLED=0 exec "${GO:-go}" build -trimpath -ldflags "-s -w" -o otelcol-picket .
