#!/usr/bin/env bash
# Install what tests/jupyterhub_fixture.py needs for a real JupyterHub on loopback:
#   - the jupyterhub package (hub + jupyterhub-singleuser) into the current Python
#     environment (the pip on PATH, i.e. the venv's when .ci/run calls this);
#   - Node.js >= 20 and the npm configurable-http-proxy (JupyterHub's default proxy;
#     the Python port of the proxy broke the kernel websocket subprotocol).
# Idempotent; runs as root on a fresh Debian machine that reaches only PyPI, npm and Debian.
set -euo pipefail

PIP="${PIP:-pip}"

log() { printf 'install-jupyterhub: %s\n' "$*"; }

# --- Python side ------------------------------------------------------------------
# jupyter_server: jupyterhub-singleuser runs as a jupyter_server extension;
# ipykernel: the kernels the tests start on the single-user server.
"$PIP" install --quiet --disable-pip-version-check "jupyterhub>=5,<7" "jupyter_server>=2" ipykernel websocket-client psutil
log "jupyterhub $("$PIP" show jupyterhub 2>/dev/null | sed -n 's/^Version: //p') installed"

# --- Node side --------------------------------------------------------------------
node_major() { node --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/' || true; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    log "installing Node.js and npm from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq nodejs npm >/dev/null
fi

major="$(node_major)"
# configurable-http-proxy 5 needs Node.js >= 20 (Debian 12 ships 18); 4.x runs on older ones
if [ "${major:-0}" -ge 20 ]; then chp_spec="configurable-http-proxy@5"; else chp_spec="configurable-http-proxy@4"; fi

if configurable-http-proxy --version >/dev/null 2>&1; then
    log "configurable-http-proxy $(configurable-http-proxy --version) already installed"
else
    log "installing $chp_spec for Node.js $(node --version)"
    npm install --global --no-fund --no-audit --loglevel=error "$chp_spec"
    if ! configurable-http-proxy --version >/dev/null 2>&1 && [ "$chp_spec" != "configurable-http-proxy@4" ]; then
        log "$chp_spec does not run on Node.js $(node --version); falling back to configurable-http-proxy@4"
        npm install --global --no-fund --no-audit --loglevel=error "configurable-http-proxy@4"
    fi
    log "configurable-http-proxy $(configurable-http-proxy --version) installed"
fi

configurable-http-proxy --version >/dev/null || { log "configurable-http-proxy does not run"; exit 1; }
