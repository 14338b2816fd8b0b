#!/usr/bin/env bash
# Regenerates dashboards/schema/dashboard.schema.json: Grafana's published dashboard model (the
# `Dashboard` type of npm @grafana/schema, the classic JSON model Grafana imports and
# provisions) as a JSON Schema (draft-07), made by ts-json-schema-generator. tests/dashboards.rs
# validates every dashboard against it with the jsonschema crate.
#
# `--expose none` inlines every type into the one root definition, so the schema's only
# reference is its own `#/definitions/Dashboard`, which the crate resolves without fetching.
# Both packages are pinned: a new Grafana release is taken on purpose, by changing these.
set -euo pipefail

GRAFANA_SCHEMA_VERSION=13.2.3
GENERATOR_VERSION=2.9.0

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cd "$work"
npm init -y >/dev/null
npm install --no-audit --no-fund --silent \
    "@grafana/schema@$GRAFANA_SCHEMA_VERSION" "ts-json-schema-generator@$GENERATOR_VERSION"
npx --no-install ts-json-schema-generator \
    --path node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen.d.ts \
    --type Dashboard \
    --expose none \
    --out "$root/dashboards/schema/dashboard.schema.json"
echo "wrote dashboards/schema/dashboard.schema.json (@grafana/schema $GRAFANA_SCHEMA_VERSION)"
