#!/usr/bin/env bash
# Install what tests/gateway_fixture.py needs for real kernel gateways on loopback:
#   - Jupyter Enterprise Gateway 3.x (with ipykernel for its kernels) in a venv of its
#     own: it pins jupyter_server 1.x, which cannot share our venv (jupyter_server 2);
#   - Jupyter Kernel Gateway 3.x into the current environment (the pip on PATH, i.e.
#     the venv's when .ci/run calls this): it runs on jupyter_server 2.
# The Enterprise Gateway venv lives outside the checkout, at $BINDER_AUTORUN_GATEWAY_VENV
# (default ~/.cache/binder_autorun-ci/enterprise-gateway), where the fixture looks for it.
# Idempotent; runs on a fresh Debian machine that reaches only PyPI, npm and Debian.
set -euo pipefail

PIP="${PIP:-pip}"
PYTHON="${PYTHON:-python3}"
EG_VENV="${BINDER_AUTORUN_GATEWAY_VENV:-$HOME/.cache/binder_autorun-ci/enterprise-gateway}"

log() { printf 'install-gateways: %s\n' "$*"; }

# --- Enterprise Gateway, in its own venv --------------------------------------------
if [ -x "$EG_VENV/bin/jupyter-enterprisegateway" ] && "$EG_VENV/bin/python" -c 'import enterprise_gateway, ipykernel' 2>/dev/null; then
    log "Enterprise Gateway already in $EG_VENV"
else
    log "building a venv for Enterprise Gateway in $EG_VENV"
    rm -rf "$EG_VENV"
    mkdir -p "$(dirname "$EG_VENV")"
    "$PYTHON" -m venv "$EG_VENV"
    "$EG_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$EG_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "jupyter-enterprise-gateway>=3.2,<4" ipykernel
fi
"$EG_VENV/bin/python" -c 'import enterprise_gateway, jupyter_server, ipykernel' \
    || { log "the Enterprise Gateway venv in $EG_VENV is broken"; exit 1; }
log "enterprise gateway $("$EG_VENV/bin/python" -c 'import enterprise_gateway; print(enterprise_gateway.__version__)') \
(jupyter_server $("$EG_VENV/bin/python" -c 'import jupyter_server; print(jupyter_server.__version__)')) in $EG_VENV"

# --- Kernel Gateway, in our environment ---------------------------------------------
"$PIP" install --quiet --disable-pip-version-check "jupyter-kernel-gateway>=3,<4"
log "jupyter-kernel-gateway $("$PIP" show jupyter-kernel-gateway 2>/dev/null | sed -n 's/^Version: //p') installed"
