# Production image: web, proxy and worker as static binaries in /app on distroless.
#   docker build -t tollgate .
#   docker run --env-file prod.env -p 8080:8080 tollgate            # web (default command)
#   docker run --env-file prod.env -p 8081:8081 tollgate /app/proxy
#   docker run --env-file prod.env tollgate /app/worker
#   docker run --env-file prod.env tollgate /app/web migrate        # before a new release

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, in their own layer: it is rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/ ./cmd/web ./cmd/proxy ./cmd/worker

# Static base: CA certificates and tzdata, no shell, runs as uid 65532 (nonroot).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /app/
ENV ENV=production \
    LOG_FORMAT=json \
    WEB_ADDR=:8080 \
    PROXY_ADDR=:8081 \
    WORKER_HEALTH_ADDR=:8082
USER nonroot
EXPOSE 8080 8081
CMD ["/app/web"]
