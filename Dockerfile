# Switchyard: the router binary and its placement plugins, built inside.
#   docker build -t switchyard .        (docker compose up builds it too)
FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN rustup target add wasm32-wasip2
COPY . .
RUN ./scripts/build-plugins.sh \
 && cargo build --release --locked --bin switchyard \
 && mkdir -p /out/plugins \
 && cp target/release/switchyard /out/ \
 && cp target/plugins/wasm32-wasip2/plugin/placement_*.wasm /out/plugins/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /srv/switchyard switchyard
WORKDIR /srv/switchyard
COPY --from=build /out/switchyard /usr/local/bin/switchyard
COPY --from=build /out/plugins/ target/plugins/wasm32-wasip2/plugin/
COPY router.toml router.schema.json ./
# The shipped catalog with the shop's placement plugin turned on.
RUN printf '%s\n' '' '[plugins]' 'active = "ecommerce"' 'on_error = "fallback"' '[plugins.modules]' \
      'ecommerce = { path = "target/plugins/wasm32-wasip2/plugin/placement_ecommerce.wasm" }' \
      'default = { path = "target/plugins/wasm32-wasip2/plugin/placement_default.wasm" }' \
      >> router.toml
USER switchyard
EXPOSE 7878
CMD ["switchyard", "serve", "--listen", "0.0.0.0:7878"]
